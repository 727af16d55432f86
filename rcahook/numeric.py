"""The one numeric core: Newton's method with a backtracking (Armijo) line search, and the
three models rcahook fits with it: the conditional logit of the `features` ranker
(rca/model.py), the logistic risk model (risk/training.py) and Platt scaling and the
evidence gate (rca/confidence.py).

numpy only: the pre-push hook imports this module (for `sigmoid`), and it must start fast
without scipy or scikit-learn. The objectives are convex and F is small (tens of
features), so a dense (F, F) Newton system is the cheapest exact solver.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# f(w) -> (loss, gradient (F,), Hessian (F, F))
Objective = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]

ARMIJO = 1e-4  # the sufficient decrease a step must achieve, as a share of the predicted one
MIN_STEP = 1e-10  # the line search gives up below this step length


@dataclass(frozen=True)
class NewtonResult:
    w: np.ndarray  # (F,) the best point found
    loss: float
    iterations: int
    converged: bool  # False: max_iter reached, or the line search found no decrease


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), without overflow for any finite z."""
    out: np.ndarray = np.exp(-np.logaddexp(0.0, -z))
    return out


def newton(objective: Objective, w0: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10,
           jitter: float = 0.0, loss_only: Callable[[np.ndarray], float] | None = None) -> NewtonResult:
    """Minimise a convex, twice-differentiable `objective` from `w0`.

    Each iteration solves H d = g and backtracks t = 1, 1/2, 1/4, ... until the Armijo
    condition f(w - t d) <= f(w) - ARMIJO * t * g.d holds. When no step length down to
    MIN_STEP decreases the loss (the problem is flat to rounding, or badly scaled), the
    method stops at the current point and reports converged=False: a worse point is never
    accepted. Converged when the Newton decrement g.d / 2 falls below `tol`.
    `jitter` is added to the Hessian's diagonal (keeps an unpenalised direction solvable);
    `loss_only` evaluates f alone, cheaper inside the line search when given.
    """
    if max_iter < 1:
        raise ValueError(f"newton: max_iter {max_iter}: expected at least 1")
    evaluate = loss_only or (lambda w: objective(w)[0])
    w = np.array(w0, dtype=np.float64)
    loss, grad, hess = objective(w)
    if not np.isfinite(loss):
        raise ValueError("newton: the loss at the starting point is not finite; check the inputs")
    for it in range(1, max_iter + 1):
        if jitter:
            hess = hess + jitter * np.eye(len(w))
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        decrement = float(grad @ step)
        if decrement < 0:  # not a descent direction (a Hessian that is not positive definite)
            step, decrement = grad, float(grad @ grad)
        if decrement / 2 <= tol:
            return NewtonResult(w, loss, it - 1, True)
        t = 1.0
        while t >= MIN_STEP:
            candidate = w - t * step
            value = evaluate(candidate)
            if np.isfinite(value) and value <= loss - ARMIJO * t * decrement:
                break
            t /= 2
        else:  # no decrease along the Newton direction: stop where we are
            return NewtonResult(w, loss, it, False)
        w = candidate
        loss, grad, hess = objective(w)
    return NewtonResult(w, loss, max_iter, False)


# --- logistic regression (the risk model, Platt scaling, the evidence gate) ------------------

def logistic_objective(A: np.ndarray, y: np.ndarray, penalty: np.ndarray,
                       weight: np.ndarray | None = None) -> tuple[Objective, Callable[[np.ndarray], float]]:
    """(objective, loss alone) of sum_i s_i [log(1 + e^z_i) - y_i z_i] + 1/2 sum_j penalty_j w_j^2,
    z = A w. A (N, K), y (N,) in [0, 1], penalty (K,), weight s (N,) or None for ones."""
    s = np.ones(len(y)) if weight is None else weight

    def loss(w: np.ndarray) -> float:
        z = A @ w
        return float(s @ (np.logaddexp(0.0, z) - y * z) + 0.5 * (penalty * w) @ w)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        z = A @ w
        p = sigmoid(z)  # (N,)
        value = float(s @ (np.logaddexp(0.0, z) - y * z) + 0.5 * (penalty * w) @ w)
        grad = A.T @ (s * (p - y)) + penalty * w  # (K,)
        hess = (A * (s * p * (1 - p))[:, None]).T @ A + np.diag(penalty)  # (K, K)
        return value, grad, hess

    return objective, loss


def fit_logistic(X: np.ndarray, y: np.ndarray, *, l2: float, intercept_l2: float = 0.0,
                 weight: np.ndarray | None = None, intercept: float | None = None, max_iter: int = 100,
                 jitter: float = 1e-9) -> tuple[np.ndarray, float, NewtonResult]:
    """(coef (F,), intercept, result) minimising the weighted logistic loss
    + l2/2 |coef|^2 + intercept_l2/2 intercept^2.

    X (N, F), y (N,) in {0, 1} (or probabilities), weight (N,) >= 0 or None. `intercept`
    is the starting value of the intercept (the log-odds of the base rate is a good one).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"fit_logistic: X must be a matrix (N, F), got shape {X.shape}")
    if y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise ValueError(f"fit_logistic: needs one label per row and at least one row "
                         f"(X {X.shape}, y {y.shape})")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("fit_logistic: X and y must be finite (a NaN or infinite feature?)")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("fit_logistic: labels must lie in [0, 1]")
    if l2 < 0 or intercept_l2 < 0:
        raise ValueError(f"fit_logistic: penalties must be >= 0 (l2 {l2}, intercept_l2 {intercept_l2})")
    s = None
    if weight is not None:
        s = np.asarray(weight, dtype=np.float64)
        if s.shape != y.shape or not np.isfinite(s).all() or (s < 0).any():
            raise ValueError("fit_logistic: weights must be one finite, non-negative number per row")
    n, f = X.shape
    A = np.hstack([X, np.ones((n, 1))])  # (N, F+1): the last column is the intercept's
    penalty = np.full(f + 1, float(l2))
    penalty[-1] = float(intercept_l2)
    w0 = np.zeros(f + 1)
    if intercept is not None:
        w0[-1] = intercept
    objective, loss = logistic_objective(A, y, penalty, s)
    result = newton(objective, w0, max_iter=max_iter, jitter=jitter, loss_only=loss)
    return result.w[:-1], float(result.w[-1]), result


# --- conditional logit (the features ranker) --------------------------------------------------

def conditional_logit_objective(examples: Sequence[tuple[np.ndarray, int]], l2: float,
                                ) -> tuple[Objective, Callable[[np.ndarray], float]]:
    """(objective, loss alone) of -mean_k log softmax(X_k w)[y_k] + l2 |w|^2."""
    n = len(examples)

    def loss(w: np.ndarray) -> float:
        total = 0.0
        for X, y in examples:
            s = X @ w
            m = s.max()
            total += s[y] - (m + np.log(np.exp(s - m).sum()))
        return -total / n + l2 * float(w @ w)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        f = len(w)
        total = 0.0
        grad = np.zeros(f)
        hess = np.zeros((f, f))
        for X, y in examples:
            s = X @ w
            m = s.max()
            e = np.exp(s - m)
            z = e.sum()
            total += s[y] - (m + np.log(z))
            p = e / z  # (N_k,)
            mean = p @ X  # (F,)
            grad += X[y] - mean
            hess += (X * p[:, None]).T @ X - np.outer(mean, mean)
        return (-total / n + l2 * float(w @ w), -grad / n + 2 * l2 * w, hess / n + 2 * l2 * np.eye(f))

    return objective, loss


def fit_conditional_logit(examples: Sequence[tuple[np.ndarray, int]], *, l2: float = 1e-3,
                          max_iter: int = 50) -> NewtonResult:
    """Maximum-likelihood conditional logit with an L2 penalty.

    examples: (X (N_k, F), index of the chosen row in X), one per choice set; every X has
    the same F columns.
    """
    if not examples:
        raise ValueError("fit_conditional_logit: needs at least one example (choice set)")
    f = None
    for k, (X, y) in enumerate(examples):
        if getattr(X, "ndim", 0) != 2 or X.shape[0] == 0:
            raise ValueError(f"fit_conditional_logit: example {k}: X must be a non-empty matrix (N, F)")
        if f is None:
            f = X.shape[1]
        if X.shape[1] != f:
            raise ValueError(f"fit_conditional_logit: example {k} has {X.shape[1]} columns, the first {f}")
        if not 0 <= int(y) < X.shape[0] or int(y) != y:
            raise ValueError(f"fit_conditional_logit: example {k}: chosen index {y} is not a row of X")
        if not np.isfinite(X).all():
            raise ValueError(f"fit_conditional_logit: example {k}: X must be finite")
    if l2 < 0:
        raise ValueError(f"fit_conditional_logit: l2 {l2}: expected >= 0")
    objective, loss = conditional_logit_objective(examples, l2)
    return newton(objective, np.zeros(f or 0), max_iter=max_iter, loss_only=loss)
