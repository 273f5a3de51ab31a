"""Turn the ``[strategy]`` and ``[backtest]`` config sections into the strategy's own configs."""

from __future__ import annotations

from tradeflow.config import Settings
from tradeflow.strategy.allocation import AllocationLimits, MarketRules
from tradeflow.strategy.exits import ExitConfig
from tradeflow.strategy.protections import ProtectionConfig
from tradeflow.strategy.signals import SignalConfig


def decision_minutes(settings: Settings) -> int:
    """Return the minutes between decisions: ``backtest.decision_minutes``, else ``training.row_step``.

    The default decides on the bars the model was trained and walk-forward scored on.
    """
    return settings.backtest.decision_minutes or settings.training.row_step


def signal_config(settings: Settings) -> SignalConfig:
    """Return the signal rules of ``[strategy]``."""
    strategy = settings.strategy
    return SignalConfig(
        families=frozenset(strategy.families),
        long_threshold=strategy.long_threshold,
        short_threshold=strategy.short_threshold,
        allow_short=strategy.allow_short,
        threshold_sensitivity=strategy.threshold_sensitivity,
        long_threshold_bounds=strategy.long_threshold_bounds,
        short_threshold_bounds=strategy.short_threshold_bounds,
        value_area_extension=strategy.value_area_extension,
        cooldown_minutes=strategy.signal_cooldown_minutes,
    )


def allocation_limits(settings: Settings) -> AllocationLimits:
    """Return the allocation limits of ``[strategy]``."""
    strategy = settings.strategy
    return AllocationLimits(
        target_volatility=strategy.target_volatility,
        max_symbol_weight=strategy.max_symbol_weight,
        correlation_threshold=strategy.correlation_threshold,
        correlated_group_weight=strategy.correlated_group_weight,
        risk_budget=strategy.risk_budget,
        max_gross_weight=strategy.max_gross_weight,
        volatile_regime_factor=strategy.volatile_regime_factor,
    )


def exit_config(settings: Settings) -> ExitConfig:
    """Return the exit rules of ``[strategy]``."""
    strategy = settings.strategy
    return ExitConfig(
        stop_atr=strategy.stop_atr,
        take_profit_atr=tuple(strategy.take_profit_atr),
        take_profit_fractions=tuple(strategy.take_profit_fractions),
        breakeven_atr=strategy.breakeven_atr,
        trailing_atr=strategy.trailing_atr,
        time_exit_minutes=strategy.time_exit_minutes,
        regime_exit=strategy.regime_exit,
    )


def protection_config(settings: Settings) -> ProtectionConfig:
    """Return the protection limits of ``[strategy]``."""
    strategy = settings.strategy
    return ProtectionConfig(
        max_drawdown=strategy.max_drawdown,
        daily_loss_limit=strategy.daily_loss_limit,
        stop_guard_count=strategy.stop_guard_count,
        stop_guard_window_minutes=strategy.stop_guard_window_minutes,
        stop_guard_pause_minutes=strategy.stop_guard_pause_minutes,
        cooldown_minutes=strategy.cooldown_minutes,
    )


def market_rules(settings: Settings) -> dict[str, MarketRules]:
    """Return each simulated symbol's exchange rules (lot size, tick size, minimum order value)."""
    return {
        spec.symbol: MarketRules(
            min_notional=spec.min_notional, quantity_step=spec.step_size, price_step=spec.tick_size
        )
        for spec in settings.simulator.symbols
    }
