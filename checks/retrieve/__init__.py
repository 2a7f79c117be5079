"""Stage 5: retrieve — what the PACS claims against what really arrives.

``retrieve.move`` asks the PACS to C-MOVE one small series to a temporary Store SCP of ours and
``retrieve.get`` fetches it with C-GET on its own association. Both follow the pending responses
under a total deadline and a no-progress watchdog (C-CANCEL, then A-ABORT; see
:mod:`qrdoctor.dicom.retrieve`), and then reconcile three numbers: what a C-FIND says exists,
what the PACS reports it sent, and what arrived. Nothing is ever sent to the PACS with C-STORE.

- :mod:`.select` chooses what to retrieve and lists what it should bring (C-FINDs);
- :mod:`.move` and :mod:`.get` are the two checks, each an observe and a conclude step;
- :mod:`.conclude` holds the reconciliation and the conclusions both share (pure);
- :mod:`.observe` turns what the DICOM layer saw into plain observation data;
- :mod:`.model` declares the observations and the facts; :mod:`.options` the options.

Importing this package registers nothing: the registry imports :mod:`.move` and :mod:`.get` by
name when a run selects them. :mod:`.options` imports no DICOM library, so that the command line
validates the retrieve options before either check's module is loaded.
"""
