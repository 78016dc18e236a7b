"""Everything that speaks DIMSE, through pynetdicom. Nothing here imports Qt."""
