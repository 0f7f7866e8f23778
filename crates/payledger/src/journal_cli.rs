//! The auditor's view of the double-entry journal: `audit trial-balance` and the journal part of
//! `audit verify`.

use payledger_domain::journal::TrialBalance;
use payledger_read_models::journal::{self, TrialBalanceRow};
use sqlx::PgPool;
use std::io::Write;

/// Prints balances per account and currency at `at` (the head when `None`). Read from the
/// journal read model when it has reached `at`, else recomputed from the event log with the
/// same posting rules; the first line says which. Returns whether every currency balances.
pub async fn print_trial_balance(
    pool: &PgPool,
    at: Option<i64>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let head = payledger_store::head_position(pool).await?;
    let at = at.unwrap_or(head);
    anyhow::ensure!(at >= 0, "--at must be a global position (>= 0)");
    // Refused like `GET /v1/journal/trial-balance?at=` refuses it, with the same code: balances
    // "at" a position nothing has reached yet would be the head's under another name.
    anyhow::ensure!(
        at <= head,
        "E_POSITION_BEYOND_HEAD: position {at} is beyond the head of the log ({head})"
    );
    let projected = journal::journal_position(pool).await?;
    let (source, rows) = if projected >= at {
        let view = journal::trial_balance(pool, Some(at)).await?;
        ("the journal read model", view.rows)
    } else {
        let book = journal::recompute(pool, at).await?;
        (
            "the event log (the journal read model is behind)",
            rows_of(&book),
        )
    };
    writeln!(out, "trial balance at global position {at}, from {source}")?;
    writeln!(
        out,
        "{:<22} {:<4} {:>20} {:>20} {:>20}",
        "account", "cur", "debit", "credit", "balance"
    )?;
    let mut balanced = true;
    let mut currencies: Vec<&str> = rows.iter().map(|r| r.currency.as_str()).collect();
    currencies.dedup();
    for currency in currencies {
        let (mut debit, mut credit) = (0i64, 0i64);
        for row in rows.iter().filter(|r| r.currency == currency) {
            debit += row.debit_minor;
            credit += row.credit_minor;
            writeln!(
                out,
                "{:<22} {:<4} {:>20} {:>20} {:>20}",
                row.account, row.currency, row.debit_minor, row.credit_minor, row.balance_minor
            )?;
        }
        let ok = debit == credit;
        balanced &= ok;
        writeln!(
            out,
            "{:<22} {:<4} {:>20} {:>20} {:>20}",
            if ok {
                "total (balanced)"
            } else {
                "total (UNBALANCED)"
            },
            currency,
            debit,
            credit,
            debit - credit
        )?;
    }
    Ok(balanced)
}

fn rows_of(book: &TrialBalance) -> Vec<TrialBalanceRow> {
    let mut rows: Vec<TrialBalanceRow> = book
        .rows
        .iter()
        .map(|((account, currency), (debit, credit))| TrialBalanceRow {
            account: account.name().to_string(),
            currency: currency.code().to_string(),
            debit_minor: *debit,
            credit_minor: *credit,
            balance_minor: debit - credit,
        })
        .collect();
    rows.sort_by(|a, b| (&a.currency, &a.account).cmp(&(&b.currency, &b.account)));
    rows
}

/// Checks that every journal entry and the whole book balance, and that the journal matches
/// what the posting rules give for the event log. Prints one line per finding; returns whether
/// everything verifies.
pub async fn verify_journal(pool: &PgPool, out: &mut impl Write) -> anyhow::Result<bool> {
    let head = payledger_store::head_position(pool).await?;
    // The log itself, to its head: every event that posts must decode and balance. One pass
    // gives the balances at the journal's position (to compare) and at the head.
    let mut lines = crate::progress_lines::ProgressLines::new();
    let (report, book) = journal::verify_to_head(pool, head, |position, head| {
        lines.update(
            "audit verify: journal postings",
            position.max(0) as u64,
            head.max(0) as u64,
            Some(position),
        );
    })
    .await?;
    let mut ok = report.ok() && book.is_balanced();
    for entry in &report.unbalanced_entries {
        writeln!(out, "UNBALANCED journal entry {entry}")?;
    }
    for totals in report.book.iter().filter(|t| !t.balanced()) {
        writeln!(
            out,
            "UNBALANCED book in {}: debits {} credits {}",
            totals.currency, totals.debit_minor, totals.credit_minor
        )?;
    }
    for (account, currency, stored, recomputed) in &report.mismatches {
        writeln!(
            out,
            "MISMATCH {account} {currency}: the journal says {stored}, the event log gives {recomputed}"
        )?;
    }
    for (currency, (debit, credit)) in book.by_currency() {
        if debit != credit {
            ok = false;
            writeln!(
                out,
                "UNBALANCED postings of the event log in {currency}: debits {debit} credits {credit}"
            )?;
        }
    }
    if ok {
        writeln!(
            out,
            "ok: {} journal entries balance up to position {} and match the event log; the book balances in every currency up to {head}",
            report.entries_checked, report.position
        )?;
        if report.position < head {
            writeln!(
                out,
                "note: the journal read model is at {} of {head}; entries after it are checked from the log only",
                report.position
            )?;
        }
    }
    Ok(ok)
}
