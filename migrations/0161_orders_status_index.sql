-- The orders board lists each status column by id (`WHERE status = $1 ORDER BY id LIMIT 101`,
-- keyset paging by id; a customer's board adds `customer_id = $2`). Without an index on status
-- the plan read every order of the fleet (or of the customer) and filtered them, the tenant
-- policy included, to fill each of the five columns, however few rows a column has. With these
-- each column reads only its page. Measured with `python -m bench.dashboard` (30,000 orders,
-- load 24-25, same data, indexes dropped for the other run): orders page p50 136 -> 76 ms
-- (operator), 133 -> 53 ms (customer); completed orders page 2: 54 -> 6 ms.
CREATE INDEX maintenance_orders_status ON maintenance_orders (status, id);
CREATE INDEX maintenance_orders_customer_status ON maintenance_orders (customer_id, status, id);
