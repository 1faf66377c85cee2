"""The retail scenario of ``../shared/scenario.md`` built on airconnect: the monthly demand
forecast (flow 3's first half) and automatic ordering (its second half), with their operators
and Assets. It uses airconnect; airconnect never imports it. Its heavy dependencies
(statsmodels, matplotlib) come with the ``retail`` extra: ``pip install 'airconnect[retail]'``."""
