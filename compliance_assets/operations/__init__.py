"""Operations on the lake: compaction, the operations audit."""
