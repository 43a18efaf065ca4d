"""Replaying NYC TLC trips as payment events: trip reading, riders, fraud
injection, generated workloads, and the time-ordered producer."""
