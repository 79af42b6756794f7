"""What a run leaves for people: result tables, figures, the printed summary, the report section."""
