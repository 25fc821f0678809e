"""Everything that speaks SQL. It hands plain dataclasses and numpy arrays to the rest of recsys."""
