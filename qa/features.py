"""The names of the fused ranking's per-candidate features, in the order of
their columns: shared by the fusion model that weighs them (qa.fusion) and
the abstention model that reads some of them (qa.abstain), so neither
imports the other for them."""

FEATURES = (
    "dense",
    "bm25_share",
    "passage",
    "dense_gap",
    "bm25_rel",
    "rrf_dense",
    "rrf_bm25",
    "type_match",
    "type_miss",
    "log_len",
    "cov_sent",
    "cov_ctx",
    "cov_doc",
    "doc_dense",
    "doc_dense_gap",
    "passage_gap",
    "cov_sent_gap",
    "cov_ctx_gap",
    "cov_doc_gap",
    "bm25_share_gap",
    "cov_title",
    "doc_sat",
    "phrase",
    "dense_in_doc_gap",
    "cov_sent_in_doc_gap",
    "bm25_share_in_doc_gap",
    "passage_in_doc_gap",
    "log_doc_candidates",
    "name_match",
    "name_miss",
    "type_near",
)
