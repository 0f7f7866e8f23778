-- Server-side cost of one append without the commit's WAL flush: 2 000 orders' three appends
-- (6 000 calls) in one transaction through APPEND_FN (append_events, append_events_part or
-- append_events_heads; replaced by sed in run_loop.sh), rolled back so the table does not grow.
\timing on
BEGIN;
DO $$
DECLARE
    v_sid  text;
    v_zero bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
BEGIN
    FOR k IN 1 .. 2000 LOOP
        v_sid := 'order-loop-' || gen_random_uuid();
        PERFORM APPEND_FN(ARRAY[v_sid], ARRAY[0::bigint], ARRAY[v_zero], ARRAY[false], ARRAY[1],
            ARRAY[gen_random_uuid()], ARRAY['OrderPlaced'], ARRAY[1],
            ARRAY['{"amount_minor": 1299, "currency": "EUR", "payee_id": "payee_7", "customer_id": "cust_42"}'::jsonb],
            ARRAY['{"correlation_id": "loop"}'::jsonb], ARRAY[sha256(('1' || v_sid)::bytea)]);
        PERFORM APPEND_FN(ARRAY[v_sid], ARRAY[1::bigint], ARRAY[sha256(('1' || v_sid)::bytea)], ARRAY[false], ARRAY[1],
            ARRAY[gen_random_uuid()], ARRAY['ConfirmRequested'], ARRAY[1],
            ARRAY['{"attempt": 1, "idempotency_key": "x"}'::jsonb],
            ARRAY['{"correlation_id": "loop"}'::jsonb], ARRAY[sha256(('2' || v_sid)::bytea)]);
        PERFORM APPEND_FN(ARRAY[v_sid], ARRAY[2::bigint], ARRAY[sha256(('2' || v_sid)::bytea)], ARRAY[false], ARRAY[1],
            ARRAY[gen_random_uuid()], ARRAY['PaymentCaptured'], ARRAY[1],
            ARRAY['{"amount_minor": 1299, "transaction_key": "tx"}'::jsonb],
            ARRAY['{"correlation_id": "loop"}'::jsonb], ARRAY[sha256(('3' || v_sid)::bytea)]);
    END LOOP;
END
$$;
ROLLBACK;
