// Per-worker request metrics, counted on the hot path with plain numbers
// and reported to the primary every second (and once more just before a
// drained exit) in prom-client's JSON format; the primary aggregates them
// with prom-client. Nothing is asked of a worker at scrape time, so a
// draining or dying worker can never stall a scrape. (prom-client's own
// Counter/Histogram cost about a tenth of a worker's CPU at full load.)

export const STATS_INTERVAL_MS = 1000;

/** Upper bounds (seconds) of the duration histogram's buckets. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** One metric as prom-client's `getMetricsAsJSON()` describes it. */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: { readonly labels: Record<string, string | number>; readonly value: number; readonly metricName?: string }[];
}

const PROTOCOLS = ['http/1.1', 'h2'] as const;

export class WorkerMetrics {
  /** Responses by protocol, then status code (index); index 0: aborted. */
  private readonly codes = PROTOCOLS.map(() => new Array<number>(1000).fill(0));
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  private readonly buckets = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  private sum = 0;
  private count = 0;
  private tlsFailures = 0;

  /** A TLS handshake failed (a client that does not trust the certificate, speaks another protocol, or gives up). */
  tlsHandshakeFailed(): void {
    this.tlsFailures++;
  }

  /** A response ended: its status code (0: the client left first), duration and protocol. */
  record(status: number, seconds: number, protocol: (typeof PROTOCOLS)[number] = 'http/1.1'): void {
    this.codes[protocol === 'h2' ? 1 : 0]![status >= 100 && status < 1000 ? status : 0]!++; // Node allows 100-999
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }

  snapshot(): MetricJson[] {
    let cumulative = 0;
    const bucketValues = this.buckets.map((n, i) => {
      cumulative += n;
      return { labels: { le: i < DURATION_BUCKETS.length ? DURATION_BUCKETS[i]! : '+Inf' }, value: cumulative, metricName: 'baton_http_request_duration_seconds_bucket' };
    });
    return [
      {
        name: 'baton_http_requests_total',
        help: 'HTTP requests answered by the app, by status code ("aborted": the client left first) and protocol (http/1.1 or h2).',
        type: 'counter', aggregator: 'sum',
        values: this.codes.flatMap((codes, p) => codes.flatMap((value, status) => value === 0 ? [] : [{ labels: { code: status === 0 ? 'aborted' : String(status), protocol: PROTOCOLS[p]! }, value }])),
      },
      {
        name: 'baton_http_request_duration_seconds',
        help: 'Time from request to the end of the response.',
        type: 'histogram', aggregator: 'sum',
        values: [
          ...bucketValues,
          { labels: {}, value: this.sum, metricName: 'baton_http_request_duration_seconds_sum' },
          { labels: {}, value: this.count, metricName: 'baton_http_request_duration_seconds_count' },
        ],
      },
      {
        name: 'baton_tls_handshake_failures_total',
        help: 'TLS handshakes that failed (the client rejected the certificate, spoke another protocol, or left).',
        type: 'counter', aggregator: 'sum',
        values: [{ labels: {}, value: this.tlsFailures }],
      },
    ];
  }
}
