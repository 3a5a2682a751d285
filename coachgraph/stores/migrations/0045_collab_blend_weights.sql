-- The blend's weights as fitted on this deployment's own history (issue 17): the vector job
-- holds out recent assignments, scores a small grid of weights on them with the ranking code,
-- and records what it chose beside what it saw. matchCoaches reads the latest row (cached);
-- with none, or a fit that found too little history, it ranks by the content weights alone.
CREATE TABLE collab_blend_weights (
    id bigserial PRIMARY KEY,
    fitted_at timestamptz NOT NULL DEFAULT now(),
    -- the weights of goal coverage, level fit, similar athletes, same city and the learned term
    w_cover double precision NOT NULL,
    w_fit double precision NOT NULL,
    w_similar double precision NOT NULL,
    w_city double precision NOT NULL,
    w_learned double precision NOT NULL,
    samples integer NOT NULL,      -- held-out assignments scored
    content_hit double precision,  -- hit@10 of the content weights on them
    chosen_hit double precision,   -- hit@10 of the weights chosen
    grid jsonb NOT NULL DEFAULT '[]',  -- every weighting tried: weights, hit@10, MRR@10
    reason text NOT NULL           -- why these weights (the margin, or too little history)
);
