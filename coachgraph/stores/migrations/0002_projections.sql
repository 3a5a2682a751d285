-- Where each persistent projection has got to in the outbox. The position is (txid, id):
-- events are read in transaction order and only below the snapshot's xmin, where no
-- transaction that could still add an earlier event is in flight.
CREATE TABLE projection_offsets (
    name text PRIMARY KEY,
    last_txid xid8 NOT NULL,
    last_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_position_idx ON outbox (txid, id);
