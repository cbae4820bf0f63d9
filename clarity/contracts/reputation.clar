;; reputation: per inference node, the results the verifiers accepted and rejected, and
;; the ratings of its users (one per inference transaction, 1 to 5, by the transaction's
;; sender, once the consensus has recorded the result). Wallets choose nodes by the
;; read-only scores.

(define-constant CONSENSUS tx-sender)

(define-constant ERR-NOT-CONSENSUS (err u300))
(define-constant ERR-UNKNOWN-TX (err u301))
(define-constant ERR-NOT-SENDER (err u302))
(define-constant ERR-ALREADY-RATED (err u303))
(define-constant ERR-BAD-SCORE (err u304))
(define-constant ERR-EXISTS (err u305))

(define-map records principal {accepted: uint, rejected: uint, ratings: uint, rating-sum: uint})
(define-map inferences (buff 32) {sender: principal, node: principal, rated: bool})

(define-private (record-of (node principal))
  (default-to {accepted: u0, rejected: u0, ratings: u0, rating-sum: u0}
              (map-get? records node)))

(define-read-only (get-record (node principal))
  (record-of node))

(define-read-only (get-inference (tx (buff 32)))
  (map-get? inferences tx))

;; Scores in thousandths: the share of accepted results (with one accepted and one
;; rejected assumed, so a new node starts at 500) and the mean rating (0 without ratings).
(define-read-only (get-score (node principal))
  (let ((r (record-of node)))
    {acceptance: (/ (* u1000 (+ (get accepted r) u1))
                    (+ (get accepted r) (get rejected r) u2)),
     rating: (if (is-eq (get ratings r) u0) u0
                 (/ (* u1000 (get rating-sum r)) (get ratings r))),
     results: (+ (get accepted r) (get rejected r))}))

;; The sender of inference `tx` rates its result from 1 to 5, once.
(define-public (rate (tx (buff 32)) (score uint))
  (let ((i (unwrap! (map-get? inferences tx) ERR-UNKNOWN-TX))
        (r (record-of (get node i))))
    (asserts! (is-eq tx-sender (get sender i)) ERR-NOT-SENDER)
    (asserts! (not (get rated i)) ERR-ALREADY-RATED)
    (asserts! (and (>= score u1) (<= score u5)) ERR-BAD-SCORE)
    (map-set inferences tx (merge i {rated: true}))
    (map-set records (get node i)
             (merge r {ratings: (+ (get ratings r) u1),
                       rating-sum: (+ (get rating-sum r) score)}))
    (ok true)))

;; --- consensus only ---

;; Records the verdict on the result of inference `tx`, sent by `sender`, served by `node`.
(define-public (record-result (tx (buff 32)) (sender principal) (node principal)
                              (accepted bool))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (record tx sender node accepted)))

;; Records the verdicts on a settled block's results, in order, as record-result does one
;; by one (one call per block: the VM loads this contract anew for every call). Fails as
;; a whole at the first result recorded before.
(define-public (record-results (results (list 1000 {tx: (buff 32), sender: principal,
                                                     node: principal, accepted: bool})))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (fold record-next results (ok true))))

(define-private (record-next (r {tx: (buff 32), sender: principal, node: principal,
                                 accepted: bool})
                             (so-far (response bool uint)))
  (match so-far
    done (record (get tx r) (get sender r) (get node r) (get accepted r))
    failed (err failed)))

(define-private (record (tx (buff 32)) (sender principal) (node principal) (accepted bool))
  (let ((r (record-of node)))
    (asserts! (map-insert inferences tx {sender: sender, node: node, rated: false}) ERR-EXISTS)
    (map-set records node
             (if accepted
                 (merge r {accepted: (+ (get accepted r) u1)})
                 (merge r {rejected: (+ (get rejected r) u1)})))
    (ok true)))
