"""Workflows: one module per use case (the scheduled assessor, the canary controller, the deployment
recorder, post-deployment monitoring, the traffic reconciler, manual control, the console, the function
runtime wiring). They compose the domain packages and the access floor; nothing below imports them."""
