-- The coaches nearest an athlete by vector (issue 17), through an HNSW index instead of an
-- exact scan of every coach vector. collab_vectors.vec has no fixed dimension (a rebuild may
-- change it), so the index covers the coach rows of the default dimension, 128 (Limits.
-- collab_dims), cast to vector(128); other dimensions keep the exact scan
-- (stores/collab.py's nearest_coaches decides).
CREATE INDEX collab_coach_hnsw ON collab_vectors
    USING hnsw ((vec::vector(128)) vector_cosine_ops)
    WHERE kind = 'coach' AND vector_dims(vec) = 128;

-- The hard constraints (same sport, room left, not already its coach) filter the index scan's
-- output, which plain HNSW stops after ef_search candidates: a sport with few coaches with
-- room could come back short. pgvector >= 0.8's iterative scan goes on until `k` rows pass
-- the filters (or hnsw.max_scan_tuples, 20,000 by default, are visited: the index holds one
-- row per coach, so at 5,000 coaches it can visit them all); relaxed_order may return them
-- slightly out of order, so they are sorted again by exact distance. ef_search 200: at 5,000
-- coaches the 30 found overlap the exact 30 by 99.8 % (100: 98.7 %, 300: 99.9 %), in 1-2 ms
-- against 20-30 ms for the exact scan (BENCHMARKS.md). The settings apply to this function's
-- statement only.
CREATE FUNCTION collab_nearest_coaches(athlete bigint, k integer)
RETURNS TABLE (id bigint, distance double precision)
LANGUAGE sql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = 200
AS $$
    WITH me AS (
        SELECT vec FROM collab_vectors
         WHERE kind = 'athlete' AND collab_vectors.id = athlete AND vector_dims(vec) = 128
    ),
    mine AS (
        SELECT sum(l2_normalize(x.vec)) AS vec FROM (
            SELECT v.vec FROM enrollments e
              JOIN collab_vectors v ON v.kind = 'program' AND v.id = e.program_id
             WHERE e.athlete_id = athlete AND e.status <> 'DROPPED' AND vector_dims(v.vec) = 128
            UNION ALL
            SELECT v.vec FROM coach_athletes ca
              JOIN collab_vectors v ON v.kind = 'coach' AND v.id = ca.coach_id
             WHERE ca.athlete_id = athlete AND vector_dims(v.vec) = 128
        ) x
    ),
    q AS (SELECT coalesce(me.vec + mine.vec, me.vec)::vector(128) AS vec FROM me, mine),
    sport AS (SELECT sport FROM athletes WHERE athletes.id = athlete),
    -- the constraints as per-row subplans, not joins: the planner then walks the index in
    -- order and stops at k rows (joined, it hashed all 5,000 coaches out of the index)
    near AS MATERIALIZED (
        SELECT v.id, v.vec::vector(128) <=> (SELECT vec FROM q) AS distance
          FROM collab_vectors v
         WHERE v.kind = 'coach' AND vector_dims(v.vec) = 128
           AND (SELECT (SELECT sport FROM sport) = ANY(c.sports)
                       AND c.active_athlete_count < c.capacity
                  FROM coaches c WHERE c.id = v.id)
           AND (SELECT count(*) FROM coach_athletes ca
                 WHERE ca.coach_id = v.id AND ca.athlete_id = athlete) = 0
           AND EXISTS (SELECT 1 FROM q)
         ORDER BY v.vec::vector(128) <=> (SELECT vec FROM q)
         LIMIT k
    )
    SELECT near.id, near.distance FROM near ORDER BY near.distance, near.id
$$;
