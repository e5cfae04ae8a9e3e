-- Assets that move (issue 25): carriers (an aircraft tail, a truck) that carry assets, their
-- position and itinerary of planned legs, stations (sites where work can be done), lanes from
-- depots to stations, and the visit each order of a carried asset is planned for.

CREATE TABLE carriers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers (id),
    ref           text NOT NULL CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    -- aircraft, truck, train, vessel: what moves the assets
    carrier_type  text NOT NULL CHECK (carrier_type IN ('aircraft', 'truck', 'train', 'vessel')),
    -- the home base: where fixed-interval maintenance sends parts
    home_site_id  bigint,
    -- the last reported position: coordinates and/or the station it is at
    latitude      double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude     double precision CHECK (longitude BETWEEN -180 AND 180),
    at_site_id    bigint,
    position_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz,
    UNIQUE (customer_id, ref),
    UNIQUE (customer_id, id),
    FOREIGN KEY (customer_id, home_site_id) REFERENCES sites (customer_id, id),
    FOREIGN KEY (customer_id, at_site_id) REFERENCES sites (customer_id, id),
    CHECK ((latitude IS NULL) = (longitude IS NULL))
);

-- Which assets a carrier holds (one carrier, several assets; an asset on one carrier at most).
CREATE TABLE carrier_mounts (
    asset_id     bigint PRIMARY KEY,
    customer_id  bigint NOT NULL,
    carrier_id   bigint NOT NULL,
    -- where on the carrier: engine 1, front-left wheel
    position     text NOT NULL DEFAULT '' CHECK (length(position) <= 64),
    mounted_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (customer_id, asset_id) REFERENCES assets (customer_id, id),
    FOREIGN KEY (customer_id, carrier_id) REFERENCES carriers (customer_id, id)
);
CREATE INDEX carrier_mounts_carrier ON carrier_mounts (carrier_id);

-- A site where work on moving assets can be done: opening hours (in the station's UTC
-- offset; both NULL: always open), what it services, its crew and the time each stop needs
-- around the work (towing to the bay and back, paperwork).
CREATE TABLE stations (
    site_id             bigint PRIMARY KEY,
    customer_id         bigint NOT NULL,
    utc_offset_minutes  integer NOT NULL DEFAULT 0 CHECK (utc_offset_minutes BETWEEN -840 AND 840),
    opens_at            time,
    closes_at           time,
    -- kinds it services; components: 'kind/component' pairs, empty = every component
    kinds               text[] NOT NULL DEFAULT '{}',
    components          text[] NOT NULL DEFAULT '{}',
    technicians         integer NOT NULL DEFAULT 1 CHECK (technicians BETWEEN 1 AND 1000),
    turnaround_hours    double precision NOT NULL DEFAULT 0
                        CHECK (turnaround_hours >= 0 AND turnaround_hours <= 240),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (customer_id, site_id) REFERENCES sites (customer_id, id),
    UNIQUE (customer_id, site_id),
    CHECK ((opens_at IS NULL) = (closes_at IS NULL))
);

-- One planned leg of a carrier, keyed by the customer's own leg id: uploading the same leg
-- again updates it; a leg id seen on another carrier is a tail swap.
CREATE TABLE carrier_legs (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id          bigint NOT NULL,
    leg_ref              text NOT NULL CHECK (leg_ref ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$'),
    carrier_id           bigint NOT NULL,
    from_site_id         bigint NOT NULL,
    to_site_id           bigint NOT NULL,
    scheduled_departure  timestamptz NOT NULL,
    scheduled_arrival    timestamptz NOT NULL,
    estimated_departure  timestamptz,
    estimated_arrival    timestamptz,
    arrival_stand        text NOT NULL DEFAULT '' CHECK (length(arrival_stand) <= 32),
    -- cancelled: replaced by a newer plan
    status               text NOT NULL DEFAULT 'planned'
                         CHECK (status IN ('planned', 'cancelled')),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, leg_ref),
    FOREIGN KEY (customer_id, carrier_id) REFERENCES carriers (customer_id, id),
    FOREIGN KEY (customer_id, from_site_id) REFERENCES sites (customer_id, id),
    FOREIGN KEY (customer_id, to_site_id) REFERENCES sites (customer_id, id),
    CHECK (scheduled_departure < scheduled_arrival),
    CHECK (estimated_departure IS NULL OR estimated_arrival IS NULL
           OR estimated_departure < estimated_arrival)
);
CREATE INDEX carrier_legs_carrier ON carrier_legs (carrier_id, scheduled_departure)
    WHERE status = 'planned';

-- How long and how much it takes to get a part from a depot to a station.
CREATE TABLE lanes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL,
    depot_id     bigint NOT NULL REFERENCES depots (id),
    site_id      bigint NOT NULL,
    lead_hours   double precision NOT NULL CHECK (lead_hours >= 0 AND lead_hours <= 8760),
    cost_minor   bigint NOT NULL DEFAULT 0 CHECK (cost_minor >= 0),
    currency     char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    FOREIGN KEY (customer_id, site_id) REFERENCES sites (customer_id, id)
);
CREATE UNIQUE INDEX lanes_one_live ON lanes (depot_id, site_id) WHERE retired_at IS NULL;
CREATE INDEX lanes_customer ON lanes (customer_id, id);

-- The visit an open order of a carried asset is planned for (one per order, moved when the
-- itinerary changes); aog_risk: no visit before the due date fits, or the part cannot be at
-- the station before the carrier.
CREATE TABLE order_visits (
    order_id         bigint PRIMARY KEY REFERENCES maintenance_orders (id),
    customer_id      bigint NOT NULL REFERENCES customers (id),
    carrier_id       bigint NOT NULL,
    site_id          bigint,
    leg_id           bigint REFERENCES carrier_legs (id),
    arrives_at       timestamptz,
    departs_at       timestamptz,
    work_hours       double precision,
    aog_risk         boolean NOT NULL DEFAULT false,
    reason           text NOT NULL DEFAULT '',
    planned_at       timestamptz NOT NULL,
    FOREIGN KEY (customer_id, carrier_id) REFERENCES carriers (customer_id, id),
    FOREIGN KEY (customer_id, site_id) REFERENCES sites (customer_id, id),
    CHECK (aog_risk OR site_id IS NOT NULL)
);
CREATE INDEX order_visits_carrier ON order_visits (carrier_id);

-- A shipment of a carried asset's order goes to a station; when the plan moves, the shipment
-- is redirected (counted here) rather than raised again.
ALTER TABLE shipments ADD COLUMN redirects integer NOT NULL DEFAULT 0 CHECK (redirects >= 0);
