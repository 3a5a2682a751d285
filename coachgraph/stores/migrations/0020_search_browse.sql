-- A browse (a blank search query) lists documents by title without case, then kind and id, in
-- byte order as Meilisearch sorts strings: this index serves its pages without a sort.
CREATE INDEX search_documents_browse_idx
    ON search_documents ((lower(title) COLLATE "C"), kind, id);
