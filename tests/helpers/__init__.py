"""Test doubles and helpers shared by several test folders.

* :mod:`.fake_detrex`: a stand-in ``detrex`` package in ``sys.modules`` (via pytest's
  ``monkeypatch``), detrex's MSDA constructor/init and transformer re-init loop.
* :mod:`.modules`: weight perturbation and missing-gradient checks.

Input builders that users and tools need live in the library:
:mod:`lite_detr_plugin.encoders.inputs`.
"""
