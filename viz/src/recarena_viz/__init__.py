"""RecArena pictures (skeleton): UMAP embedding maps, leaderboard charts, training curves.
Filled in by the report issue."""
