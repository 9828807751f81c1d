"""Protection units beside the array: the LB-ABFT checksum unit and the output range checker."""
