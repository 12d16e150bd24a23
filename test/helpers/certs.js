// @ts-check
// Certificates made at test time with openssl (no key is committed): a test
// CA, and leaf certificates for 127.0.0.1/localhost that it signs, valid
// when the test asks (expired, not yet valid, expiring soon).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const CA_CONFIG = `[ ca ]
default_ca = test
[ test ]
dir = .
database = ./db/index.txt
new_certs_dir = ./db
serial = ./db/serial
certificate = ./ca.crt
private_key = ./ca.key
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
[ leaf ]
basicConstraints = CA:false
subjectAltName = IP:127.0.0.1, DNS:localhost
extendedKeyUsage = serverAuth
`;

/** @param {Date} d */
const stamp = (d) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';

/** @param {string} dir @param {string[]} args */
const openssl = (dir, args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/**
 * A CA in `dir` (created). `issue()` makes a leaf signed by it; `from`/`to`
 * default to an hour ago and 30 days from now.
 * @param {string} dir
 */
export function makeCa(dir) {
  mkdirSync(join(dir, 'db'), { recursive: true });
  writeFileSync(join(dir, 'db', 'index.txt'), '');
  writeFileSync(join(dir, 'db', 'serial'), '1000\n');
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-subj', '/CN=baton test CA']);
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  let n = 0;
  return {
    /** PEM of the CA certificate, for clients that trust it. */
    ca,
    caFile: join(dir, 'ca.crt'),
    /**
     * @param {{ from?: Date, to?: Date, name?: string }} [opts]
     * @returns {{ certFile: string, keyFile: string, serial: string }}
     */
    issue(opts = {}) {
      const name = opts.name ?? `leaf${++n}`;
      const from = opts.from ?? new Date(Date.now() - 3600_000);
      const to = opts.to ?? new Date(Date.now() + 30 * 24 * 3600_000);
      openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost']);
      openssl(dir, ['ca', '-batch', '-config', 'ca.cnf', '-extensions', 'leaf', '-in', `${name}.csr`, '-out', `${name}.crt`, '-startdate', stamp(from), '-enddate', stamp(to), '-notext']);
      const serial = openssl(dir, ['x509', '-in', `${name}.crt`, '-noout', '-serial']).trim().replace(/^serial=/, '');
      // The leaf, then its chain (here: the CA), as TLS_CERT_FILE expects.
      writeFileSync(join(dir, `${name}.chain.crt`), readFileSync(join(dir, `${name}.crt`), 'utf8') + ca);
      return { certFile: join(dir, `${name}.chain.crt`), keyFile: join(dir, `${name}.key`), serial };
    },
  };
}
