"""The closed-loop demo: run Hone on simulated cameras and labelers beside a random control."""
