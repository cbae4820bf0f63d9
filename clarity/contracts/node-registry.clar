;; node-registry: inference nodes, the models they serve, their price per million output
;; tokens, the network address wallets reach them at, and a bond that a rejected result
;; slashes. A node leaves in two steps: it asks to withdraw, stops being listed, and takes
;; its bond back `withdraw-delay` ledger blocks later, and only once every inference of its
;; that a block carried has settled: the consensus holds the bond through the vote window
;; of each block that carries one (`hold`), so that a rejected answer always finds the bond.

(define-constant CONSENSUS tx-sender)
(define-constant MAX-MODELS u8)

(define-constant ERR-NOT-CONSENSUS (err u200))
(define-constant ERR-ALREADY-REGISTERED (err u201))
(define-constant ERR-NOT-REGISTERED (err u202))
(define-constant ERR-NO-MODELS (err u203))
(define-constant ERR-UNAPPROVED-MODEL (err u204))
(define-constant ERR-BOND-TOO-LOW (err u205))
(define-constant ERR-BAD-ADDRESS (err u206))
(define-constant ERR-INSUFFICIENT-FUNDS (err u207))
(define-constant ERR-WITHDRAWING (err u208))
(define-constant ERR-NOT-WITHDRAWING (err u209))
(define-constant ERR-TOO-EARLY (err u210))
(define-constant ERR-BAD-PARAMETER (err u211))
(define-constant ERR-ALREADY-REPORTED (err u212))
(define-constant ERR-UNSETTLED (err u213))

(define-data-var min-bond uint u1)
(define-data-var withdraw-delay uint u100)

(define-map nodes principal
  {models: (list 8 (buff 32)), price: uint, address: (string-ascii 128), bond: uint,
   slashed: uint, withdraw-at: (optional uint)})

;; Node -> the last inference block (block-height) in which an inference of its may still
;; settle: until then its bond stays, whatever the withdrawal delay.
(define-map held-until principal uint)

;; Tenures (by ledger anchor) whose producer signed two blocks, reported and punished.
(define-map equivocations {producer: principal, anchor: (buff 32)} uint)

(define-read-only (equivocation (producer principal) (anchor (buff 32)))
  (map-get? equivocations {producer: producer, anchor: anchor}))

(define-read-only (get-node (node principal))
  (map-get? nodes node))

;; Whether `node` is registered, not leaving, and serves `model`.
(define-read-only (serves (node principal) (model (buff 32)))
  (match (map-get? nodes node)
    n (and (is-none (get withdraw-at n)) (is-some (index-of? (get models n) model)))
    false))

;; The last inference block in which an inference of `node` may still settle, if any.
(define-read-only (get-held-until (node principal))
  (map-get? held-until node))

(define-read-only (get-min-bond)
  (var-get min-bond))

(define-private (approved-step (model (buff 32)) (all bool))
  (and all (contract-call? .model-registry is-approved model)))

(define-private (check-offer (models (list 8 (buff 32))) (address (string-ascii 128)))
  (begin
    (asserts! (> (len models) u0) ERR-NO-MODELS)
    (asserts! (fold approved-step models true) ERR-UNAPPROVED-MODEL)
    (asserts! (> (len address) u0) ERR-BAD-ADDRESS)
    (ok true)))

;; Registers tx-sender as an inference node, depositing `bond` micro-FAI.
(define-public (register (models (list 8 (buff 32))) (price uint) (address (string-ascii 128))
                         (bond uint))
  (let ((node tx-sender))
    (asserts! (is-none (map-get? nodes node)) ERR-ALREADY-REGISTERED)
    (try! (check-offer models address))
    (asserts! (>= bond (var-get min-bond)) ERR-BOND-TOO-LOW)
    (unwrap! (stx-transfer? bond node (as-contract tx-sender)) ERR-INSUFFICIENT-FUNDS)
    (map-set nodes node {models: models, price: price, address: address, bond: bond,
                         slashed: u0, withdraw-at: none})
    (ok true)))

;; Changes the models, price and address of a registered node.
(define-public (update (models (list 8 (buff 32))) (price uint) (address (string-ascii 128)))
  (let ((n (unwrap! (map-get? nodes tx-sender) ERR-NOT-REGISTERED)))
    (asserts! (is-none (get withdraw-at n)) ERR-WITHDRAWING)
    (try! (check-offer models address))
    (map-set nodes tx-sender (merge n {models: models, price: price, address: address}))
    (ok true)))

;; Starts leaving: the node is no longer listed; the bond is free after the delay.
(define-public (request-withdrawal)
  (let ((n (unwrap! (map-get? nodes tx-sender) ERR-NOT-REGISTERED))
        (at (+ burn-block-height (var-get withdraw-delay))))
    (asserts! (is-none (get withdraw-at n)) ERR-WITHDRAWING)
    (map-set nodes tx-sender (merge n {withdraw-at: (some at)}))
    (ok at)))

;; Takes the bond back and deletes the registration, once the delay has passed and every
;; inference of the node that a block carried has settled.
(define-public (withdraw)
  (let ((node tx-sender)
        (n (unwrap! (map-get? nodes tx-sender) ERR-NOT-REGISTERED))
        (at (unwrap! (get withdraw-at n) ERR-NOT-WITHDRAWING)))
    (asserts! (>= burn-block-height at) ERR-TOO-EARLY)
    (asserts! (> block-height (default-to u0 (map-get? held-until node))) ERR-UNSETTLED)
    (if (> (get bond n) u0)
        (try! (as-contract (stx-transfer? (get bond n) tx-sender node)))
        true)
    (map-delete nodes node)
    (map-delete held-until node)
    (ok (get bond n))))

;; --- consensus only ---

;; A block carries inferences of `node` that may settle as late as inference block `until`
;; (the end of its vote window): the bond stays until then.
(define-public (hold (node principal) (until uint))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (map-set held-until node
             (match (map-get? held-until node) held (if (> held until) held until) until))
    (ok true)))

;; Burns up to `amount` of the bond of `node` (a rejected result); returns what was burnt.
(define-public (slash (node principal) (amount uint))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (let ((n (unwrap! (map-get? nodes node) ERR-NOT-REGISTERED))
          (cut (if (< amount (get bond n)) amount (get bond n))))
      (if (> cut u0) (try! (as-contract (stx-burn? cut tx-sender))) true)
      (map-set nodes node (merge n {bond: (- (get bond n) cut),
                                    slashed: (+ (get slashed n) cut)}))
      (ok cut))))

;; `producer` signed two blocks for the tenure anchored at ledger block `anchor` (the
;; consensus checked both signatures): burns its whole bond and delists it, once per
;; tenure; returns what was burnt. A producer that is not a registered node has nothing
;; here to punish: an error, and nothing is recorded (anyone can sign two headers).
(define-public (slash-equivocation (producer principal) (anchor (buff 32)))
  (let ((key {producer: producer, anchor: anchor})
        (n (unwrap! (map-get? nodes producer) ERR-NOT-REGISTERED))
        (cut (get bond n)))
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (asserts! (is-none (map-get? equivocations key)) ERR-ALREADY-REPORTED)
    (if (> cut u0) (try! (as-contract (stx-burn? cut tx-sender))) true)
    ;; Delisted too: it serves again only with a new bond, after withdrawing.
    (map-set nodes producer
             (merge n {bond: u0, slashed: (+ (get slashed n) cut),
                       withdraw-at: (some (default-to burn-block-height (get withdraw-at n)))}))
    (map-set equivocations key cut)
    (ok cut)))

;; Sets the minimum bond and the withdrawal delay (at genesis).
(define-public (configure (minimum uint) (delay uint))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (asserts! (> minimum u0) ERR-BAD-PARAMETER)
    (var-set min-bond minimum)
    (var-set withdraw-delay delay)
    (ok true)))

;; Sealing keys (X25519) by principal: what a served inference's text is sealed to for
;; the verifiers of its block, so that no other node reads it. Any principal publishes
;; its own; a node publishes the key derived from its node key at start.
(define-map sealing-keys principal (buff 32))

(define-read-only (get-sealing-key (who principal))
  (map-get? sealing-keys who))

(define-public (set-sealing-key (key (buff 32)))
  (begin
    (asserts! (is-eq (len key) u32) ERR-BAD-PARAMETER)
    (map-set sealing-keys tx-sender key)
    (ok true)))
