include $(sort $(wildcard $(BR2_EXTERNAL_BETWIXT_PATH)/package/*/*.mk))
