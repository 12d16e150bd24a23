// Imported first by the worker entry. Ctrl+C, Ctrl+\ and a closed terminal
// signal the whole process group; a worker keeping Node's default handlers
// would die mid-request. The primary alone decides when a worker stops (by an
// IPC message, then SIGKILL past the deadline), so these are ignored here.
// A listener (not SIG_IGN) is the only way in Node: it resets inherited ignores.
const ignore = (): void => {};
for (const signal of ['SIGINT', 'SIGHUP', 'SIGTERM', 'SIGQUIT'] as const) process.on(signal, ignore);
