"""Test support: one module per job, imported by the tests as ``support.<module>``.

- ``ports``: free loopback TCP ports.
- ``tools``: where the real servers and DCMTK clients are installed; skip-or-fail when missing.
- ``process``: starting, waiting for and stopping a server process, and its log.
- ``corpus``: the test DICOM data (instances, corpora, Part 10 bytes).
- ``orthanc``, ``dcmqrscp``: the two real Query/Retrieve servers and their configuration.
- ``peer_fixtures``: pytest fixtures for those servers (registered by ``tests/conftest.py``).
- ``scu``: client helpers -- pynetdicom C-ECHO/C-FIND/C-MOVE and DCMTK's ``findscu``.
- ``storescp``: the test Store SCP that records (and can refuse) what arrives.
- ``faults``: in-process peers that misbehave on purpose (fault injection).
- ``simulator``: fixtures and helpers around the simulated PACS (registered by conftest).
- ``run``: running checks from tests and reading their results.
"""
