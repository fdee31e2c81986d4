"""Recovery domain: daily warehouse snapshots into the archive's store, and the quarterly disaster-recovery drills."""
