"""DeployGuard: keeps bad releases out of production on AWS.

The shared package of every DeployGuard Lambda function (shipped as a layer):
models, configuration, analysis, storage, AWS access and notification.
"""

__version__ = "0.1.0"
