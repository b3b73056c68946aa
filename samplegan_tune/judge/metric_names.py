"""The names of every quality metric ("quality/*"), shared by the modules that compute them
(`metrics`, `musicmetrics`), the score (`judge`) and everything that reads reports."""

FD, FAD_INF, FAD_INF_R2 = "quality/fd", "quality/fad_inf", "quality/fad_inf_r2"
KID, NDB_K, FLATNESS = "quality/kid", "quality/ndb_k", "quality/flatness"
LOUDNESS, LOUDNESS_GAP = "quality/loudness_dbfs", "quality/loudness_gap_db"
STFT_DISTANCE, DIVERSITY = "quality/stft_distance", "quality/diversity_ratio"
REPETITION, CHANGE = "quality/repetition", "quality/spectral_change"
NOISE_SPREAD, SCORE = "quality/noise_spread", "quality/score"
CREST = "quality/crest_ratio"
FLOOR = "quality/floor_gap_db"
MUSIC_FD, TAG_KL = "quality/music_fd", "quality/tag_kl"
DRIFTS = {
    "key": "quality/key_drift",
    "tempo": "quality/tempo_drift",
    "timbre": "quality/timbre_drift",
    "level": "quality/level_drift",
}
"""`continuity` distance -> its metric: the continuations' mean ÷ the true continuations'."""
METRICS = (
    *(MUSIC_FD, TAG_KL, *DRIFTS.values(), FAD_INF, FAD_INF_R2, FD, KID, NDB_K, FLATNESS),
    *(LOUDNESS, LOUDNESS_GAP, CREST, FLOOR, STFT_DISTANCE, DIVERSITY, REPETITION, CHANGE),
    *(NOISE_SPREAD, SCORE),
)
"""Every metric `metrics.evaluate_clips` reports, in display order."""
