"""The refresh domain: tracked videos re-resolved at set ages after posting (engagement curves, deleted content)."""
