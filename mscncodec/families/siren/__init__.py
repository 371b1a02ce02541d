"""The paper's family: SIREN batched over groups, Meta-SGD with hard-concrete gates, sparse updates."""
