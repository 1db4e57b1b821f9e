'use strict';
// Loaded with `mocha --require` by run-pouchdb-suite.sh, in place of PouchDB's
// tests/integration/test.setup_global_hooks.js.
//
// PouchDB's file turns an unhandled promise rejection into a failed root "after each" hook,
// and mocha then skips every test left in the run. Here the rejection is handed to mocha as an
// uncaught error instead: mocha fails the test that is running with that error (often an
// assertion thrown inside a callback, which would otherwise only show up as a timeout) and
// goes on with the next test.
process.on('unhandledRejection', function (reason) {
  process.emit('uncaughtException', reason);
});
