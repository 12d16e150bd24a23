// @ts-check
// placeholder: written next
export const name = 'balance';
/** @param {any} ctx */
export async function run(ctx) { ctx.say('balance: not written yet'); return { skipped: true }; }
/** @param {any} x @param {any} add */
export function targets(x, add) {}
/** @param {any} x @returns {string[]} */
export function report(x) { return []; }
