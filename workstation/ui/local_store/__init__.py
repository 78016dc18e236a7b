"""The Local store tab: what the store holds, and importing into it or exporting from it."""
