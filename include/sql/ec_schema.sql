-- EC site sales (PostgreSQL, database ec). Idempotent: safe to run on every start.
CREATE TABLE IF NOT EXISTS ec_orders (
    order_id    BIGSERIAL PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    ordered_at  TIMESTAMPTZ(6) NOT NULL,
    updated_at  TIMESTAMPTZ(6) NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS ec_order_lines (
    line_id    BIGSERIAL PRIMARY KEY,
    order_id   BIGINT NOT NULL REFERENCES ec_orders,
    item_id    VARCHAR(16) NOT NULL,
    quantity   INT NOT NULL,
    unit_price NUMERIC(12,2) NOT NULL,
    ordered_at TIMESTAMPTZ(6) NOT NULL,
    updated_at TIMESTAMPTZ(6) NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS ec_orders_updated_at_idx ON ec_orders (updated_at, order_id);
CREATE INDEX IF NOT EXISTS ec_orders_ordered_at_idx ON ec_orders (ordered_at);
CREATE INDEX IF NOT EXISTS ec_order_lines_updated_at_idx ON ec_order_lines (updated_at, line_id);
CREATE INDEX IF NOT EXISTS ec_order_lines_ordered_at_idx ON ec_order_lines (ordered_at);
CREATE INDEX IF NOT EXISTS ec_order_lines_order_id_idx ON ec_order_lines (order_id);
