"""What a user looks at and takes away: the listening page, its figures, the export."""
