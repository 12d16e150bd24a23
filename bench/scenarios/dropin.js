// @ts-check
// placeholder: written next
export const name = 'dropin';
/** @param {any} ctx */
export async function run(ctx) { ctx.say('dropin: not written yet'); return { skipped: true }; }
/** @param {any} x @param {any} add */
export function targets(x, add) {}
/** @param {any} x @returns {string[]} */
export function report(x) { return []; }
