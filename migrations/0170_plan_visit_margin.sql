-- The visit margin of a plan: how long before an order's due date the carrier's visit (where a
-- moving asset's work is done) must arrive. It was a constant of the planner (12 h).
ALTER TABLE plans
    ADD COLUMN visit_margin_hours double precision NOT NULL DEFAULT 12
        CHECK (visit_margin_hours >= 0 AND visit_margin_hours <= 720);
