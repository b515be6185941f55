/**
 * The Timebank Ledger API's client for TypeScript: openapi-fetch over the types that
 * openapi-typescript generates from openapi/openapi.json (src/schema.ts, never edited by hand).
 *
 * Every path, parameter, body and answer is typed from the API's own document; this file adds
 * only what every integrator needs: the bearer token, fresh Idempotency-Keys, the member a
 * mini-program acts for, and errors as typed RFC 9457 problems. docs/integration.md shows it at work.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

/** A schema of the API by its name in openapi.json, e.g. `Schema<"MemberBalances">`. */
export type Schema<Name extends keyof components["schemas"]> = components["schemas"][Name];

/** An error answer (application/problem+json, RFC 9457; docs/errors.md lists each `type`). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: { field: string; message: string; code?: string }[];
  [extension: string]: unknown;
}

/** Thrown by `must` for an error answer: the problem, whose `type` a program tells apart. */
export class ProblemError extends Error {
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(`${problem.status} ${problem.type}: ${problem.detail ?? problem.title}`);
    this.name = "ProblemError";
    this.problem = problem;
  }
}

export interface TimebankOptions {
  /** The service's address, e.g. https://timebank.example.org */
  baseUrl: string;
  /** A credential's bearer token (a mini-program backend holds a `miniprogram` one). */
  token: string;
  /** A fetch of your own (tests, proxies); the platform's by default. */
  fetch?: typeof globalThis.fetch;
}

/** The bearer token on every request. */
function credentials(token: string): Middleware {
  return {
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
}

/** A fresh Idempotency-Key for a write that appends to the journal (its operation declares
 * the header `idempotency-key` as required). Keep it until the write has its answer: a retry
 * must send the same key, so that the write happens once. */
export function newKey(): string {
  return globalThis.crypto.randomUUID();
}

export type TimebankClient = Client<paths>;

/** A typed client of the API for one credential. */
export function createTimebankClient(options: TimebankOptions): TimebankClient {
  const client = createClient<paths>({ baseUrl: options.baseUrl, fetch: options.fetch });
  client.use(credentials(options.token));
  return client;
}

/** The headers of a request a mini-program makes for one of its members. */
export function actingFor(memberId: string): { "X-Member-Id": string } {
  return { "X-Member-Id": memberId };
}

/** The answer's data, or a ProblemError for an error answer. */
export async function must<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (error !== undefined || !response.ok) {
    const problem =
      typeof error === "object" && error !== null && "type" in error
        ? (error as Problem)
        : { type: "about:blank", title: response.statusText, status: response.status };
    throw new ProblemError(problem);
  }
  return data as T;
}
