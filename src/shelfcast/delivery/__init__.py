"""The trainer's side of model delivery: `selection` (a pure choice with a reason for every rejection),
`publish` (immutable versions, channel moves, forced promotions), `channels` (the pointer and its append-only
log), `promotion` (the nightly sequence), `rollback`, `registry` (MLflow aliases kept consistent with the
pointers) and `access` (who may touch which prefix, for SeaweedFS and IAM)."""
