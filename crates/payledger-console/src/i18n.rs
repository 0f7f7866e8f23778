//! Labels in English and Korean. The operators of the source documents are Korean; the code and
//! the API speak English. A page asks for a label by key; a key without a translation shows the
//! key itself, so a missing label is visible rather than blank.

use actix_web::HttpRequest;

/// The language cookie set by the switch; otherwise `Accept-Language` decides.
pub const LANG_COOKIE: &str = "payledger_console_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    pub fn parse(text: &str) -> Option<Lang> {
        match text {
            "en" => Some(Lang::En),
            "ko" => Some(Lang::Ko),
            _ => None,
        }
    }

    /// The switch's cookie, else the first of the browser's languages we have.
    pub fn of(request: &HttpRequest) -> Lang {
        if let Some(lang) = request
            .cookie(LANG_COOKIE)
            .and_then(|c| Lang::parse(c.value()))
        {
            return lang;
        }
        let header = request
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for part in header.split(',').take(20) {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("ko") {
                return Lang::Ko;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::En
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ko,
            Lang::Ko => Lang::En,
        }
    }

    /// The label of `key` in this language.
    pub fn t(self, key: &str) -> String {
        let (en, ko) = label(key);
        match self {
            Lang::En => en.to_string(),
            Lang::Ko => ko.to_string(),
        }
    }
}

fn label(key: &str) -> (&str, &str) {
    match key {
        "title" => ("payledger console", "payledger 운영 콘솔"),
        "skip" => ("Skip to content", "본문으로 건너뛰기"),
        "language_name" => ("English", "한국어"),
        "switch_language" => ("한국어로 보기", "View in English"),
        "sign_in" => ("Sign in", "로그인"),
        "sign_out" => ("Sign out", "로그아웃"),
        "api_key" => ("API key", "API 키"),
        "api_key_help" => (
            "A support, auditor or admin key (plk_…). Client keys cannot sign in.",
            "support, auditor, admin 역할의 키(plk_…)로 로그인합니다. client 키는 사용할 수 없습니다.",
        ),
        "signed_in_as" => ("Signed in as", "로그인 사용자"),
        "session_ends" => ("Session ends", "세션 만료"),
        "dashboard" => ("Dashboard", "대시보드"),
        "orders" => ("Orders", "주문"),
        "operations" => ("Operations", "운영"),
        "webhooks" => ("Webhooks", "웹훅"),
        "api_keys" => ("API keys", "API 키"),
        "ledger" => ("Ledger and audit", "원장·감사"),
        "claims" => ("Claims", "분쟁"),
        "search" => ("Search", "검색"),
        "order_id" => ("Order id", "주문 ID"),
        "payment_key" => ("Payment key", "결제 키(paymentKey)"),
        "customer" => ("Customer", "고객"),
        "payee" => ("Payee", "판매자"),
        "status" => ("Status", "상태"),
        "any" => ("Any", "전체"),
        "placed_from" => ("Placed from", "주문일 시작"),
        "placed_to" => ("Placed until", "주문일 끝"),
        "placed_at" => ("Placed", "주문 시각"),
        "paid_at" => ("Paid", "결제 시각"),
        "amount" => ("Amount", "금액"),
        "captured" => ("Captured", "승인 금액"),
        "refunded" => ("Refunded", "환불 금액"),
        "refund_pending" => ("Refund pending", "환불 진행 중"),
        "refundable" => ("Refundable", "환불 가능"),
        "provider" => ("Provider", "결제 대행사"),
        "order_name" => ("Order name", "주문명"),
        "no_orders" => ("No order matches.", "조건에 맞는 주문이 없습니다."),
        "next_page" => ("Next page", "다음 페이지"),
        "previous_page" => ("Previous page", "이전 페이지"),
        "recovery" => ("Recovery status", "결제 복구 상태"),
        "next_action" => ("Next action", "다음 조치"),
        "check_provider" => ("Check provider", "결제사 조회"),
        "timeline" => ("Timeline", "타임라인"),
        "event" => ("Event", "이벤트"),
        "summary" => ("Summary", "요약"),
        "actor" => ("Actor", "처리자"),
        "recorded_at" => ("Recorded", "기록 시각"),
        "raw_event" => ("Raw event", "원본 이벤트"),
        "version" => ("Version", "버전"),
        "position" => ("Global position", "전역 위치"),
        "hash" => ("Hash", "해시"),
        "refund" => ("Refund", "환불"),
        "refund_amount" => (
            "Amount in minor units (empty: everything refundable)",
            "금액(최소 단위, 비우면 환불 가능 전액)",
        ),
        "reason" => ("Reason", "사유"),
        "confirm_refund" => (
            "I confirm this refund; the customer's money is returned.",
            "환불을 확인합니다. 고객에게 금액이 반환됩니다.",
        ),
        "cancel_enrollment" => ("Cancel enrollment", "수강 취소"),
        "also_refund" => ("Refund what is refundable", "환불 가능 금액 환불"),
        "record_external_payment" => ("Record external payment", "외부 결제 기록"),
        "provider_transaction_id" => ("Provider transaction id", "결제사 거래 ID"),
        "currency" => ("Currency", "통화"),
        "method" => ("Method", "결제 수단"),
        "admin_actions" => ("Admin actions", "관리자 작업"),
        "kill_switches" => ("Kill switches", "긴급 차단 스위치"),
        "payments_switch" => ("All new payments", "모든 신규 결제"),
        "accepting" => ("Accepting", "정상"),
        "suspended" => ("Suspended", "중지됨"),
        "suspend" => ("Suspend", "중지"),
        "resume" => ("Resume", "재개"),
        "suspended_payees" => ("Suspended payees", "판매 중지된 판매자"),
        "none" => ("None", "없음"),
        "payee_id" => ("Payee id", "판매자 ID"),
        "since" => ("Since", "시작"),
        "history" => ("History", "이력"),
        "inbound_dead_letters" => ("Inbound webhook dead letters", "수신 웹훅 실패 보관함"),
        "outbound_dead_letters" => (
            "Outbound notification dead letters",
            "발신 알림 실패 보관함",
        ),
        "replay" => ("Replay", "재처리"),
        "dead_letters" => ("Dead letters", "실패 보관함"),
        "attempts" => ("Attempts", "시도"),
        "last_error" => ("Last error", "마지막 오류"),
        "payload" => ("Payload", "페이로드"),
        "received_at" => ("Received", "수신 시각"),
        "nothing_dead" => ("Nothing is dead-lettered.", "실패 보관함이 비어 있습니다."),
        "create_key" => ("Create key", "키 생성"),
        "name" => ("Name", "이름"),
        "role" => ("Role", "역할"),
        "created_at" => ("Created", "생성 시각"),
        "created_by" => ("Created by", "생성자"),
        "revoked" => ("Revoked", "폐기됨"),
        "active" => ("Active", "사용 중"),
        "revoke" => ("Revoke", "폐기"),
        "key_shown_once" => (
            "Copy this key now: it is shown once and cannot be read again.",
            "지금 복사하세요. 이 키는 한 번만 표시됩니다.",
        ),
        "projections" => ("Projections", "프로젝션"),
        "lag" => ("Lag", "지연"),
        "events" => ("events", "건"),
        "rebuild" => ("Rebuild", "재구축"),
        "rebuild_running" => ("Rebuilding…", "재구축 중…"),
        "rebuild_done" => ("Rebuild finished", "재구축 완료"),
        "rebuild_failed" => ("Rebuild failed", "재구축 실패"),
        "progress" => ("Progress", "진행률"),
        "audit_verify" => ("Verify the log (audit verify)", "로그 검증(audit verify)"),
        "verify" => ("Verify", "검증"),
        "audit_ok" => ("Every chain and position verifies.", "모든 해시 체인과 위치가 검증되었습니다."),
        "audit_problem" => ("Problem found", "문제 발견"),
        "events_checked" => ("Events checked", "검사한 이벤트"),
        "streams_checked" => ("Streams checked", "검사한 스트림"),
        "event_explorer" => ("Event explorer", "이벤트 탐색기"),
        "stream_prefix" => ("Stream prefix", "스트림 접두어"),
        "event_type" => ("Event type", "이벤트 유형"),
        "from_position" => ("After position", "시작 위치(이후)"),
        "stream" => ("Stream", "스트림"),
        "trial_balance" => ("Trial balance", "시산표"),
        "at_position" => ("At position (empty: now)", "기준 위치(비우면 현재)"),
        "account" => ("Account", "계정"),
        "debit" => ("Debit", "차변"),
        "credit" => ("Credit", "대변"),
        "balance" => ("Balance", "잔액"),
        "tb_balanced" => ("Debits equal credits.", "차변과 대변이 일치합니다."),
        "tb_unbalanced" => ("Debits and credits differ.", "차변과 대변이 다릅니다."),
        "done" => ("Done", "완료"),
        "refused" => ("Refused", "거부됨"),
        "back" => ("Back", "돌아가기"),
        "error" => ("Error", "오류"),
        "not_allowed" => (
            "Your role may not open this screen.",
            "이 화면을 볼 권한이 없습니다.",
        ),
        "times_in" => ("Times in", "시간대"),
        "hover_utc" => ("hover for UTC", "마우스를 올리면 UTC"),
        "claim" => ("Claim", "분쟁"),
        "state" => ("State", "상태"),
        "deadline" => ("Deadline", "기한"),
        "claim_type" => ("Type", "유형"),
        "filed_by" => ("Filed by", "신청자"),
        "filed_at" => ("Filed", "접수 시각"),
        "respond_by" => ("Respond by", "답변 기한"),
        "deadline_missed" => ("Deadline missed", "기한 경과"),
        "assigned_to" => ("Assigned to", "담당자"),
        "assign" => ("Assign to me", "내게 배정"),
        "resolve" => ("Resolve", "결정"),
        "at_stake" => ("Amount at stake", "분쟁 금액"),
        "description" => ("Description", "내용"),
        "evidence" => ("Evidence", "증빙"),
        "claimant_statement" => ("Claimant's statement", "신청자 진술"),
        "respondent_statement" => ("Respondent's statement", "상대방 진술"),
        "no_statement" => ("No statement yet.", "아직 진술이 없습니다."),
        "decision" => ("Decision", "결정"),
        "outcome" => ("Outcome", "결과"),
        "payout" => ("Payee payout", "판매자 지급액"),
        "compensation" => ("Compensation to the payee", "판매자 보상액"),
        "coupon" => ("Coupon for the customer", "고객 쿠폰"),
        "penalties" => ("Penalties", "제재"),
        "preview" => ("Preview the split", "분배 미리보기"),
        "confirm_resolution" => ("Confirm the resolution", "결정 확정"),
        "split_preview" => ("The split before confirming", "확정 전 분배"),
        "balanced" => (
            "Refund and payout add up to the amount at stake.",
            "환불액과 지급액의 합이 분쟁 금액과 같습니다.",
        ),
        "unbalanced" => (
            "Refund and payout do not add up to the amount at stake; the API will refuse it.",
            "환불액과 지급액의 합이 분쟁 금액과 다릅니다. API가 거부합니다.",
        ),
        "no_claims" => ("No claim in this state.", "이 상태의 분쟁이 없습니다."),
        "customers" => ("Customers", "고객·구독"),
        "customer_id" => ("Customer id", "고객 ID"),
        "look_up" => ("Look up", "조회"),
        "subscription_queues" => ("Subscriptions by state", "상태별 구독"),
        "no_subscriptions" => ("No subscription here.", "구독이 없습니다."),
        "subscription" => ("Subscription", "구독"),
        "subscriptions" => ("Subscriptions", "구독"),
        "plan" => ("Plan", "요금제"),
        "next_charge" => ("Next charge", "다음 결제"),
        "next_retry" => ("Next retry", "다음 재시도"),
        "dunning_retries" => ("Dunning retries", "재결제 시도"),
        "last_failure" => ("Last failure", "마지막 실패"),
        "membership" => ("Membership and credits", "멤버십·크레딧"),
        "membership_level" => ("Membership level", "멤버십 등급"),
        "credit_balance" => ("Credit balance", "크레딧 잔액"),
        "credits_purchased" => ("Credits purchased", "구매한 크레딧"),
        "credits_spent" => ("Credits spent", "사용한 크레딧"),
        "credits_clawed_back" => ("Credits taken back (refunds)", "환불로 회수한 크레딧"),
        "credit_shortfall" => ("Shortfall (already spent)", "회수 부족분(이미 사용)"),
        "credits" => ("Credits", "크레딧"),
        "wallet_history" => ("Credit wallet history", "크레딧 지갑 내역"),
        "billing_keys" => ("Billing keys", "빌링키"),
        "billing_key" => ("Billing key", "빌링키"),
        "billing_keys_help" => (
            "Card facts only: the provider's billing key is sealed in the ledger and never shown.",
            "카드 정보만 표시합니다. 결제사의 빌링키는 원장에 암호화되어 있으며 표시하지 않습니다.",
        ),
        "interval" => ("Interval", "주기"),
        "anchor" => ("First charge (anchor)", "최초 결제(기준일)"),
        "cycle" => ("Cycle", "회차"),
        "paid_cycles" => ("paid", "결제 완료"),
        "paid_through" => ("Paid through", "이용 기간 끝"),
        "grace_ends" => ("Grace period ends", "유예 기간 끝"),
        "cancels_at_period_end" => ("Cancels at period end", "기간 종료 시 해지"),
        "attempt_in_flight" => ("Charge in flight", "결제 진행 중"),
        "billing_periods" => ("Paid billing periods", "결제된 이용 기간"),
        "period" => ("Period", "기간"),
        "charge_attempts" => ("Charge attempts (dunning)", "결제 시도(재결제)"),
        "trigger" => ("Trigger", "계기"),
        "cancel_subscription" => ("Cancel the subscription", "구독 해지"),
        "cancel_at_period_end" => ("Cancel at period end", "기간 종료 시 해지"),
        "cancel_at_period_end_help" => (
            "Benefits stay until the paid period ends; nothing is refunded.",
            "결제된 기간이 끝날 때까지 혜택이 유지되며 환불은 없습니다.",
        ),
        "withdraw_cancellation" => ("Withdraw the cancellation", "해지 철회"),
        "charge_now" => ("Charge now", "지금 결제"),
        "charge_now_help" => (
            "Charges the current cycle with the billing key now (admins).",
            "현재 회차를 빌링키로 지금 결제합니다(관리자).",
        ),
        "end_now" => ("End now", "즉시 종료"),
        "confirm_end_now" => (
            "I confirm: the subscription ends now and its benefits stop at once.",
            "확인합니다. 구독이 지금 종료되고 혜택이 즉시 중단됩니다.",
        ),
        "settlements" => ("Settlements", "정산"),
        "statement" => ("Statement", "정산서"),
        "week_of" => ("Week of", "주(해당 날짜)"),
        "no_statements" => ("No statement matches.", "조건에 맞는 정산서가 없습니다."),
        "payments" => ("Payments", "결제"),
        "refunds" => ("Refunds", "환불"),
        "compensations" => ("Compensations", "보상"),
        "held" => ("Held (claims)", "보류(분쟁)"),
        "released" => ("Released holds", "보류 해제"),
        "carried" => ("Carried balance", "이월 잔액"),
        "net_sales" => ("Net sales", "순매출"),
        "platform_fee" => ("Platform fee", "플랫폼 수수료"),
        "net" => ("Net", "순액"),
        "net_payable" => ("Net payable", "지급 예정액"),
        "carry_forward" => ("Carried forward", "다음 주 이월"),
        "totals" => ("Totals", "합계"),
        "holds" => ("Holds", "보류"),
        "lines" => ("Lines", "정산 항목"),
        "kind" => ("Kind", "종류"),
        "memo" => ("Memo", "메모"),
        "carried_from" => ("Carried from", "이월 원 주"),
        "confirmed_at" => ("Confirmed", "확정 시각"),
        "paid_out_at" => ("Paid out", "지급 시각"),
        "payout_reference" => ("Payout reference", "지급 참조번호"),
        "confirm_statement" => ("Confirm the statement", "정산서 확정"),
        "confirm_statement_help" => (
            "Freezes the statement once its week is over; later lines go to the next week.",
            "주가 끝난 정산서를 확정합니다. 이후 항목은 다음 주로 넘어갑니다.",
        ),
        "record_payout" => ("Record the payout", "지급 기록"),
        "confirm_payout" => (
            "I confirm this transfer was made; the statement is closed.",
            "이체가 완료되었음을 확인합니다. 정산서가 마감됩니다.",
        ),
        "service_levels" => ("Service levels", "서비스 수준(SLO)"),
        "show" => ("Show", "보기"),
        "from_the_log" => ("From the log", "로그 기준"),
        "slo_truncated" => (
            "More events than one read takes fall in this period: the figures cover its first part only.",
            "이 기간의 이벤트가 한 번에 읽는 양보다 많습니다. 앞부분만 집계했습니다.",
        ),
        "figure" => ("Figure", "지표"),
        "over_period" => ("Over the period", "기간 내"),
        "since_start" => ("This process since it started (/metrics)", "이 프로세스 시작 이후(/metrics)"),
        "target" => ("Target", "목표"),
        "meets" => ("Meets", "충족"),
        "breach" => ("Breach", "위반"),
        "success_rate" => ("Payment success rate", "결제 성공률"),
        "confirm_p95" => ("Confirm latency p95", "승인 지연 p95"),
        "confirm_mean" => ("Confirm latency, mean", "승인 지연 평균"),
        "mismatch_rate" => ("Amount-mismatch rate", "금액 불일치율"),
        "discrepancy_rate" => ("Provider discrepancies", "결제사 불일치"),
        "webhook_processing_failures" => (
            "Webhook processing failures (retried or dead-lettered)",
            "웹훅 처리 실패(재시도·실패 보관)",
        ),
        "webhook_refusals" => ("Webhooks refused (signature, payload)", "거부된 웹훅(서명·본문)"),
        "notification_failures" => (
            "Notification delivery failures",
            "알림 발송 실패",
        ),
        "volume_chart" => ("Confirmations per interval", "구간별 승인 건수"),
        "volume_chart_desc" => (
            "Stacked bars per interval: captured, failed, and rejected for an amount mismatch or recorded as a provider discrepancy. The table below has the same figures.",
            "구간별 누적 막대: 승인, 실패, 금액 불일치·결제사 불일치. 아래 표에 같은 수치가 있습니다.",
        ),
        "latency_chart" => ("Confirm latency p95 per interval", "구간별 승인 지연 p95"),
        "latency_chart_desc" => (
            "A line of the 95th percentile confirmation latency per interval, with the 1500 ms target dashed. The table below has the same figures.",
            "구간별 승인 지연 95백분위 선과 1500 ms 목표(점선). 아래 표에 같은 수치가 있습니다.",
        ),
        "chart_figures" => ("The charts' figures", "차트 수치"),
        "captured_key" => ("Captured", "승인"),
        "failed_key" => ("Failed", "실패"),
        "mismatch_key" => ("Mismatched", "불일치"),
        "refund_policy" => ("The refund policy's split", "환불 정책 기준 분배"),
        "notice_at_filing" => ("Notice before the start, at filing", "접수 시점의 시작 전 남은 시간"),
        "policy_tier" => ("Policy tier", "정책 구간"),
        "policy_refund" => ("Policy refund", "정책상 환불액"),
        "policy_payee_keeps" => ("Policy: payee keeps", "정책상 판매자 몫"),
        "policy_help" => (
            "What the cancellation policy (100 % at 48 h or more, 50 % at 24 h or more, else 0 %) gives for the amount at stake, counted from the filing. The decision may differ; the preview shows by how much.",
            "취소 환불 정책(48시간 이상 100 %, 24시간 이상 50 %, 그 외 0 %)을 접수 시점 기준으로 분쟁 금액에 적용한 값입니다. 결정은 다를 수 있으며, 미리보기에서 차이를 보여 줍니다.",
        ),
        "against_policy" => ("Decision's refund against the policy", "결정 환불액 − 정책 환불액"),
        "refund_discrepancies" => ("Refund discrepancies", "환불 불일치"),
        "refund_discrepancies_help" => (
            "The provider reported these refund requests differently from the ledger. A difference moves no money: the refund keeps waiting for the provider, its amount held, until a decision that fits completes or fails it. Support reviews each; an admin resolves it with a note.",
            "결제사가 이 환불 요청을 원장과 다르게 보고했습니다. 불일치로는 돈이 움직이지 않습니다. 환불은 금액을 보류한 채, 맞는 결정이 와서 완료되거나 실패할 때까지 결제사를 기다립니다. 지원팀이 각각 검토하고, 관리자가 메모와 함께 해결합니다.",
        ),
        "provider_request" => ("Provider's request", "결제사 요청"),
        "provider_status" => ("Provider's status", "결제사 상태"),
        "fact" => ("Fact", "항목"),
        "ledger_expected" => ("Ledger expected", "원장 기대값"),
        "provider_said" => ("Provider said", "결제사 보고값"),
        "discrepancy_open" => ("Under review", "검토 중"),
        "discrepancy_resolved" => ("Resolved", "해결됨"),
        "discrepancy_closed" => ("Closed by the provider's decision", "결제사 결정으로 종료"),
        "resolved_by" => ("Resolved by", "해결한 사람"),
        "note" => ("Note", "메모"),
        "resolve_discrepancy" => ("Resolve the discrepancy", "불일치 해결"),
        "resolve_discrepancy_help" => (
            "Say what you did (1 to 500 characters, one line; no personal data). The refund keeps waiting for the provider.",
            "조치 내용을 적어 주세요(1–500자, 한 줄, 개인정보 제외). 환불은 계속 결제사를 기다립니다.",
        ),
        "unavailable_title" => ("Temporarily unavailable", "일시적으로 사용할 수 없음"),
        "unavailable_message" => (
            "The ledger's database did not answer in time. Try again in a few seconds.",
            "원장 데이터베이스가 제때 응답하지 않았습니다. 몇 초 뒤에 다시 시도해 주세요.",
        ),
        "retry_after_seconds" => ("Retry after (seconds)", "다시 시도까지(초)"),
        "error_code" => ("Error code", "오류 코드"),
        _ => (key, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_both_languages_and_unknown_keys_show_themselves() {
        assert_eq!(Lang::En.t("orders"), "Orders");
        assert_eq!(Lang::Ko.t("orders"), "주문");
        assert_eq!(Lang::Ko.t("no_such_label"), "no_such_label");
    }
}
