"""The integer nonlinear units of docs/nonlinear.md and the arithmetic blocks they share."""
