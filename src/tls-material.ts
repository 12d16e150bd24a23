// The certificate and key a generation serves, read and validated by the
// primary at start, before every reload forks anything, and by `baton
// check`. Workers get the bytes validated here (never a second read of the
// files, which might have changed in between), and never inside the config
// object, which is logged: the private key appears in no log line, status
// output or error message.
import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { Config, ConfigError, LoadResult } from './config.js';

/** A certificate that expires sooner than this is warned about at start and at each reload. */
export const EXPIRY_WARNING_MS = 7 * 24 * 3600 * 1000;

export interface TlsMaterial {
  /** PEM: the leaf, then its chain. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string;
  readonly certFile: string;
  readonly subject: string;
  readonly serialNumber: string;
  readonly validFrom: Date;
  readonly validTo: Date;
}

export type TlsResult =
  | { readonly ok: true; readonly material: TlsMaterial | undefined; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly errors: readonly ConfigError[] };

/** First PEM certificate block in `pem` (the leaf). */
function leafOf(pem: string): string | undefined {
  return /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(pem)?.[0];
}

function read(path: string, key: 'TLS_CERT_FILE' | 'TLS_KEY_FILE'): string | ConfigError {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied (baton must be able to read it)' : (err as Error).message;
    return { key, message: `${key} ${path}: cannot read it: ${why}` };
  }
}

/**
 * Reads and checks the certificate and key named by `config` (paths
 * relative to `dir`). No TLS configured: ok, no material. Errors name the
 * file and the reason, never the key's contents.
 */
export function loadTlsMaterial(config: Config, dir: string, now = Date.now()): TlsResult {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return { ok: true, material: undefined, warnings: [] };
  const certFile = resolve(dir, config.tlsCertFile);
  const keyFile = resolve(dir, config.tlsKeyFile);
  const cert = read(certFile, 'TLS_CERT_FILE');
  const key = read(keyFile, 'TLS_KEY_FILE');
  const errors = [cert, key].filter((x): x is ConfigError => typeof x !== 'string');
  if (errors.length > 0 || typeof cert !== 'string' || typeof key !== 'string') return { ok: false, errors };

  const leafPem = leafOf(cert);
  if (!leafPem) return { ok: false, errors: [{ key: 'TLS_CERT_FILE', message: `TLS_CERT_FILE ${certFile}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)` }] };
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
  } catch (err) {
    return { ok: false, errors: [{ key: 'TLS_CERT_FILE', message: `TLS_CERT_FILE ${certFile}: not a valid certificate: ${(err as Error).message}` }] };
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // Not the parser's message: it could quote the file.
    return { ok: false, errors: [{ key: 'TLS_KEY_FILE', message: `TLS_KEY_FILE ${keyFile}: not a PEM private key (or it is encrypted: baton needs it unencrypted)` }] };
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    return { ok: false, errors: [{ key: 'TLS_KEY_FILE', message: `TLS_KEY_FILE ${keyFile} does not match the certificate in TLS_CERT_FILE ${certFile} (subject ${leaf.subject.replace(/\n/g, ', ')})` }] };
  }
  const validFrom = new Date(leaf.validFrom);
  const validTo = new Date(leaf.validTo);
  if (validTo.getTime() <= now) return { ok: false, errors: [{ key: 'TLS_CERT_FILE', message: `TLS_CERT_FILE ${certFile}: the certificate expired on ${validTo.toISOString()}` }] };
  if (validFrom.getTime() > now) return { ok: false, errors: [{ key: 'TLS_CERT_FILE', message: `TLS_CERT_FILE ${certFile}: the certificate is not valid before ${validFrom.toISOString()}` }] };
  try {
    // What the workers will do with it: catches a broken chain or an unusable key type.
    createSecureContext({ cert, key, minVersion: config.tlsMinVersion });
  } catch (err) {
    return { ok: false, errors: [{ key: 'TLS_CERT_FILE', message: `TLS_CERT_FILE ${certFile} with TLS_KEY_FILE ${keyFile}: unusable: ${(err as Error).message}` }] };
  }
  const warnings = validTo.getTime() - now < EXPIRY_WARNING_MS
    ? [`the certificate in TLS_CERT_FILE ${certFile} expires on ${validTo.toISOString()}, in less than 7 days: renew it and reload`] : [];
  return {
    ok: true, warnings,
    material: { cert, key, certFile, subject: leaf.subject.replace(/\n/g, ', '), serialNumber: leaf.serialNumber, validFrom, validTo },
  };
}

/** A config load with the TLS material checked and attached (or its errors). */
export function withTls(result: LoadResult, dir: string): LoadResult {
  if (!result.ok) return result;
  const tls = loadTlsMaterial(result.loaded.config, dir);
  if (!tls.ok) return { ok: false, errors: tls.errors, envFile: result.loaded.envFile };
  return { ...result, loaded: Object.freeze({ ...result.loaded, tls: tls.material, warnings: tls.warnings }) };
}
