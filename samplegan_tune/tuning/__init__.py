"""The search: spaces, trials, the Ray Tune glue, the final fit, ranking, the leaderboard."""
