-- Store (POS) sales (MariaDB, database pos). Idempotent: safe to run on every start.
CREATE TABLE IF NOT EXISTS pos_sales (
    sale_id    BIGINT AUTO_INCREMENT PRIMARY KEY,
    shop_id    VARCHAR(16) NOT NULL,
    item_id    VARCHAR(16) NOT NULL,
    quantity   INT NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    sold_at    DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    INDEX pos_sales_updated_at_idx (updated_at, sale_id),
    INDEX pos_sales_sold_at_idx (sold_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
