"""The UAV emergency-response service network simulator and its Gymnasium faces."""
