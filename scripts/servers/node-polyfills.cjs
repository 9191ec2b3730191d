'use strict'
// Preloaded into the js-ipfs daemon with NODE_OPTIONS=--require <this file>.
// Some of js-ipfs 0.66.1's transitive dependencies call Promise.withResolvers, which
// Node 20 lacks (it arrived in Node 22). Define it only when missing, non-enumerable
// like the built-in, so a newer Node keeps its own.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
