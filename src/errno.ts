// A libuv error code (what a raw handle's listen() or accept returns) as
// its name, for messages: EADDRINUSE rather than -98.
import { getSystemErrorName } from 'node:util';

export function errnoMessage(code: number): string {
  try {
    return getSystemErrorName(code);
  } catch {
    return `error ${code}`;
  }
}
