-- Facets count documents by (sports, city, level). Grouping by those values (an array and a
-- text) cost 2-3x grouping by one integer, so each document carries a 64-bit hash of its
-- combination; the API maps the few distinct keys back to their values (and caches them).
CREATE FUNCTION cg_facet_key(text[], text, smallint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashtextextended(
        coalesce(array_to_string($1, chr(31)), '') || chr(30) || coalesce($2, '') || chr(30)
        || coalesce($3::text, ''), 0) $$;

ALTER TABLE search_documents
    ADD COLUMN facet_key bigint GENERATED ALWAYS AS (cg_facet_key(sports, city, level)) STORED;
CREATE INDEX search_documents_facet_key_idx ON search_documents (facet_key);
