//! Rows in PostgreSQL's binary `COPY` format, for bulk loads of build tables.
//!
//! Values are encoded with sqlx's own encoders (the ones the live path's `unnest` statements
//! bind with), so a value loaded by `COPY` is the value `apply` would have written: timestamps
//! are truncated to microseconds the same way, for instance.

use crate::ProjectionError;
use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, PgConnection, Postgres};

/// Bytes sent per `CopyData` message: large enough to amortise the round trip, small enough that
/// PostgreSQL starts parsing before the whole table is sent.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// `PGCOPY\n\377\r\n\0`, then flags and the header extension length (both 0).
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The rows of one table, encoded for `COPY ... FROM STDIN (FORMAT binary)`.
pub struct CopyRows {
    buf: PgArgumentBuffer,
    columns: i16,
    rows: usize,
    /// Fields written in the current row: a pair assertion against `columns`.
    fields_in_row: i16,
}

impl CopyRows {
    pub fn new(columns: i16) -> CopyRows {
        let mut buf = PgArgumentBuffer::default();
        buf.extend_from_slice(SIGNATURE);
        CopyRows {
            buf,
            columns,
            rows: 0,
            fields_in_row: columns,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Starts a row; exactly `columns` fields must follow.
    pub fn row(&mut self) {
        assert_eq!(
            self.fields_in_row, self.columns,
            "the previous COPY row has the wrong number of fields"
        );
        self.buf.extend_from_slice(&self.columns.to_be_bytes());
        self.fields_in_row = 0;
        self.rows += 1;
    }

    /// A field encoded the way sqlx binds it (`Option::None` is NULL).
    pub fn field<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> Result<(), ProjectionError> {
        let start = self.open_field();
        let is_null = value
            .encode_by_ref(&mut self.buf)
            .map_err(|e| ProjectionError::Encode(e.to_string()))?;
        self.close_field(start, matches!(is_null, IsNull::Yes))
    }

    /// A text field, without a copy into an owned string.
    pub fn text(&mut self, value: &str) -> Result<(), ProjectionError> {
        let start = self.open_field();
        self.buf.extend_from_slice(value.as_bytes());
        self.close_field(start, false)
    }

    /// A jsonb field serialised straight from `value` (no intermediate `serde_json::Value`);
    /// jsonb normalises key order and spacing, so it stores what binding the `Value` stores.
    pub fn jsonb<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProjectionError> {
        let start = self.open_field();
        // The jsonb binary format: a version byte, then the JSON text.
        self.buf.push(1);
        let bytes: &mut Vec<u8> = &mut self.buf;
        serde_json::to_writer(bytes, value).map_err(|e| ProjectionError::Encode(e.to_string()))?;
        self.close_field(start, false)
    }

    fn open_field(&mut self) -> usize {
        assert!(
            self.fields_in_row < self.columns,
            "more COPY fields than columns"
        );
        self.fields_in_row += 1;
        let start = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        start
    }

    fn close_field(&mut self, start: usize, is_null: bool) -> Result<(), ProjectionError> {
        let length = if is_null {
            self.buf.truncate(start + 4);
            -1
        } else {
            i32::try_from(self.buf.len() - start - 4)
                .map_err(|_| ProjectionError::Encode("a field exceeds 2 GiB".into()))?
        };
        self.buf[start..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// Loads the rows into `target` (`table (col, …)`, in the order the fields were written).
    pub async fn copy_into(
        mut self,
        conn: &mut PgConnection,
        target: &str,
    ) -> Result<u64, ProjectionError> {
        if self.rows == 0 {
            return Ok(0);
        }
        assert_eq!(
            self.fields_in_row, self.columns,
            "the last COPY row is short"
        );
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        let mut copy = conn
            .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
            .await?;
        for chunk in self.buf.chunks(COPY_CHUNK_BYTES) {
            if let Err(error) = copy.send(chunk).await {
                copy.abort(error.to_string()).await?;
                return Err(error.into());
            }
        }
        let rows = copy.finish().await?;
        // Pair assertion: PostgreSQL read as many rows as were encoded.
        if rows != self.rows as u64 {
            return Err(ProjectionError::Encode(format!(
                "COPY into {target} loaded {rows} rows of {}",
                self.rows
            )));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_a_field_count_then_length_prefixed_fields() {
        let mut rows = CopyRows::new(3);
        rows.row();
        rows.text("ab").unwrap();
        rows.field(&7i64).unwrap();
        rows.field(&None::<i32>).unwrap();
        let bytes = &rows.buf[SIGNATURE.len()..];
        let expected: Vec<u8> = [
            &3i16.to_be_bytes()[..],
            &2i32.to_be_bytes(),
            b"ab",
            &8i32.to_be_bytes(),
            &7i64.to_be_bytes(),
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(bytes, &expected[..]);
        assert_eq!(rows.rows(), 1);
    }

    #[test]
    fn jsonb_fields_carry_the_version_byte() {
        let mut rows = CopyRows::new(1);
        rows.row();
        rows.jsonb(&serde_json::json!({"a": 1})).unwrap();
        let bytes = &rows.buf[SIGNATURE.len() + 2..];
        assert_eq!(&bytes[..4], &8i32.to_be_bytes());
        assert_eq!(&bytes[4..], b"\x01{\"a\":1}");
    }

    #[test]
    #[should_panic(expected = "more COPY fields than columns")]
    fn a_row_with_too_many_fields_is_refused() {
        let mut rows = CopyRows::new(1);
        rows.row();
        rows.field(&1i32).unwrap();
        rows.field(&2i32).unwrap();
    }
}
