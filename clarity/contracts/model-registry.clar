;; model-registry: the models the network runs. Anyone proposes a model (its id digest,
;; name, architecture, context length and verification method); the verifiers of the
;; current cycle vote; a majority of the set approves or rejects it. Only approved models
;; are valid in inference transactions: a new model needs a vote, not a fork.

(define-constant CONSENSUS tx-sender)

(define-constant ERR-NOT-CONSENSUS (err u100))
(define-constant ERR-EXISTS (err u101))
(define-constant ERR-BAD-NAME (err u102))
(define-constant ERR-BAD-CONTEXT (err u103))
(define-constant ERR-BAD-METHOD (err u104))
(define-constant ERR-UNKNOWN-MODEL (err u105))
(define-constant ERR-NOT-VERIFIER (err u106))
(define-constant ERR-ALREADY-VOTED (err u107))
(define-constant ERR-DECIDED (err u108))
(define-constant ERR-NO-VERIFIER-SET (err u109))

(define-constant MAX-CONTEXT u1048576)

(define-map models (buff 32)
  {name: (string-ascii 64), arch: (string-ascii 32), context-length: uint,
   method: (string-ascii 16), proposer: principal, status: (string-ascii 8),
   yes: uint, no: uint, cycle: uint})
(define-map votes {id: (buff 32), voter: principal} bool)

(define-read-only (get-model (id (buff 32)))
  (map-get? models id))

(define-read-only (is-approved (id (buff 32)))
  (match (map-get? models id)
    m (is-eq (get status m) "approved")
    false))

(define-private (valid-method (method (string-ascii 16)))
  (or (is-eq method "replay") (is-eq method "judge")))

(define-private (check-fields (name (string-ascii 64)) (context-length uint)
                              (method (string-ascii 16)))
  (begin
    (asserts! (> (len name) u0) ERR-BAD-NAME)
    (asserts! (and (> context-length u0) (<= context-length MAX-CONTEXT)) ERR-BAD-CONTEXT)
    (asserts! (valid-method method) ERR-BAD-METHOD)
    (ok true)))

;; Proposes a model; it waits for the verifiers' votes.
(define-public (propose (id (buff 32)) (name (string-ascii 64)) (arch (string-ascii 32))
                        (context-length uint) (method (string-ascii 16)))
  (begin
    (asserts! (is-none (map-get? models id)) ERR-EXISTS)
    (try! (check-fields name context-length method))
    (map-set models id {name: name, arch: arch, context-length: context-length,
                        method: method, proposer: tx-sender, status: "pending",
                        yes: u0, no: u0, cycle: (contract-call? .staking current-cycle)})
    (ok true)))

;; A verifier of the current cycle votes; a majority of the set decides.
(define-public (vote (id (buff 32)) (approve bool))
  (let ((m (unwrap! (map-get? models id) ERR-UNKNOWN-MODEL))
        (cycle (contract-call? .staking current-cycle))
        (verifiers (unwrap! (contract-call? .staking get-verifier-set cycle) ERR-NO-VERIFIER-SET))
        (needed (+ (/ (len verifiers) u2) u1)))
    (asserts! (is-eq (get status m) "pending") ERR-DECIDED)
    (asserts! (is-some (index-of? verifiers tx-sender)) ERR-NOT-VERIFIER)
    (asserts! (map-insert votes {id: id, voter: tx-sender} approve) ERR-ALREADY-VOTED)
    (let ((yes (if approve (+ (get yes m) u1) (get yes m)))
          (no (if approve (get no m) (+ (get no m) u1)))
          (status (if (>= yes needed) "approved" (if (>= no needed) "rejected" "pending"))))
      (map-set models id (merge m {yes: yes, no: no, status: status}))
      (ok status))))

;; The models of the genesis block, approved without a vote (consensus only).
(define-public (approve-genesis-model (id (buff 32)) (name (string-ascii 64))
                                      (arch (string-ascii 32)) (context-length uint)
                                      (method (string-ascii 16)))
  (begin
    (asserts! (is-eq tx-sender CONSENSUS) ERR-NOT-CONSENSUS)
    (asserts! (is-none (map-get? models id)) ERR-EXISTS)
    (try! (check-fields name context-length method))
    (map-set models id {name: name, arch: arch, context-length: context-length,
                        method: method, proposer: tx-sender, status: "approved",
                        yes: u0, no: u0, cycle: u0})
    (ok true)))
