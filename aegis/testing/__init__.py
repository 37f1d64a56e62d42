"""Fakes for users' own tests.

- :class:`FakeKubernetesAPI`: a loopback HTTP server that behaves like the Kubernetes API
  for the calls Aegis's actuators make; drive it with the real ``kubernetes`` client.
"""

from aegis.testing._fake_kubernetes import FakeKubernetesAPI, RecordedRequest

__all__ = ["FakeKubernetesAPI", "RecordedRequest"]
