"""RecArena serving (skeleton): ONNX bundles of leaderboard winners and the in-database
inference server. Filled in by the serving and inference-database issues."""
